// The AI SDK (npm `ai`): DefaultChatTransport + readUIMessageStream against /v1/ui/chat.
// MODE=stream: send a message, read it to the end. MODE=stop: stop through POST
// /v1/messages/{id}/stop after the first text. MODE=resume: abort the request after the first
// text, then reconnect (GET /v1/ui/chat/{id}/stream) and read the replay to the end; then
// reconnect again (nothing running: null). Prints JSON. Env: CHATRELAY_URL, CHATRELAY_TOKEN,
// CHAT_ID, PROMPT, MODE, GATE_URL (optional: POSTed after the first text, releases the fake).
import { DefaultChatTransport, readUIMessageStream } from "ai";

const base = process.env.CHATRELAY_URL;
const headers = { Authorization: `Bearer ${process.env.CHATRELAY_TOKEN}` };
const transport = new DefaultChatTransport({ api: `${base}/v1/ui/chat`, headers });
const chatId = process.env.CHAT_ID;
const mode = process.env.MODE ?? "stream";
const userMessage = { id: "u1", role: "user", parts: [{ type: "text", text: process.env.PROMPT }] };

function textOf(message) {
  return (message?.parts ?? []).filter((p) => p.type === "text").map((p) => p.text).join("");
}

async function readAll(stream, onFirstText) {
  let last = null;
  let fired = false;
  const errors = [];
  try {
    for await (const message of readUIMessageStream({ stream, onError: (e) => errors.push(String(e)) })) {
      last = message;
      if (!fired && textOf(message)) {
        fired = true;
        if (onFirstText && (await onFirstText(message)) === "stop-reading") break;
      }
    }
  } catch (error) {
    errors.push(String(error));
  }
  return { messageId: last?.id ?? null, text: textOf(last), errors };
}

const abort = new AbortController();
const stream = await transport.sendMessages({ chatId, messages: [userMessage], trigger: "submit-message",
  messageId: undefined, abortSignal: abort.signal });
const result = { mode };
const release = async () => {
  if (process.env.GATE_URL) await fetch(process.env.GATE_URL, { method: "POST" });
};
if (mode === "stream") {
  result.first = await readAll(stream);
} else if (mode === "stop") {
  result.first = await readAll(stream, async (message) => {
    const stop = await fetch(`${base}/v1/messages/${message.id}/stop`, { method: "POST", headers });
    result.stopStatus = stop.status;
    await release();
  });
} else if (mode === "resume") {
  result.first = await readAll(stream, async () => {
    abort.abort();
    return "stop-reading";
  });
  await release();
  const again = await transport.reconnectToStream({ chatId });
  result.resumed = again ? await readAll(again) : null;
  result.afterEnd = (await transport.reconnectToStream({ chatId })) === null ? "no-content" : "stream";
}
process.stdout.write(JSON.stringify(result) + "\n");
