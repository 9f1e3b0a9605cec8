// The openai npm package against POST /v1/chat/completions, streamed and not.
// Prints {"streamed": {text, messageId}, "whole": {text, messageId}, "errors": {...}} as JSON.
// Env: CHATRELAY_URL, CHATRELAY_TOKEN, PROMPT.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: `${process.env.CHATRELAY_URL}/v1`, apiKey: process.env.CHATRELAY_TOKEN,
  maxRetries: 0 });
const messages = [{ role: "user", content: process.env.PROMPT }];

const { data: stream, response } = await client.chat.completions
  .create({ model: "mock", messages, stream: true, stream_options: { include_usage: true } })
  .withResponse();
let text = "";
let usage = null;
for await (const chunk of stream) {
  if (chunk.choices.length) text += chunk.choices[0].delta.content ?? "";
  if (chunk.usage) usage = chunk.usage;
}
const streamed = { text, messageId: response.headers.get("x-message-id"), usage };

const whole = await client.chat.completions.create({ model: "mock", messages }).withResponse();
const result = {
  streamed,
  whole: { text: whole.data.choices[0].message.content, messageId: whole.response.headers.get("x-message-id") },
  errors: {},
};
const bad = new OpenAI({ baseURL: `${process.env.CHATRELAY_URL}/v1`, apiKey: "not-a-token", maxRetries: 0 });
for (const [name, call] of [
  ["unauthorized", () => bad.chat.completions.create({ model: "mock", messages })],
  ["unknown_model", () => client.chat.completions.create({ model: "no-such-model", messages })],
]) {
  try {
    await call();
    result.errors[name] = null;
  } catch (error) {
    result.errors[name] = { cls: error.constructor.name, status: error.status };
  }
}
process.stdout.write(JSON.stringify(result) + "\n");
