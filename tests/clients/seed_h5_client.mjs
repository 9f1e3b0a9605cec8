// The seed's H5 chat client (shared/seed), its logic unchanged: @microsoft/fetch-event-source,
// the exact request body (terminal, largeModel "BAIDU", userCode, prompt, window), and
// `answer += e.data` for every message until "[DONE]". Only the transport facts differ: the
// server URL, and the bearer token chatrelay requires (the seed sent no identity at all).
// Prints {"answer", "error"} as JSON. Env: CHATRELAY_URL, CHATRELAY_TOKEN, PROMPT, USER_CODE.
import { fetchEventSource } from "@microsoft/fetch-event-source";

// fetch-event-source is written for browsers: it watches document visibility and uses
// window timers. Node has neither; this is the page's environment, not the client's logic.
globalThis.window ??= globalThis;
globalThis.document ??= { hidden: false, addEventListener() {}, removeEventListener() {} };

const getAnswer = `${process.env.CHATRELAY_URL}/v1/chat/stream?format=text`;
const customerId = process.env.USER_CODE;
const searchKey = process.env.PROMPT;

const result = await new Promise((resolve) => {
  const responseRef = { current: "" };
  const requestParams = {
    terminal: "terminal",
    largeModel: "BAIDU",
    userCode: customerId,
    prompt: searchKey.trim() || "",
    window: `window`,
  };
  const ctrlAbout = new AbortController();
  fetchEventSource(getAnswer, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${process.env.CHATRELAY_TOKEN}` },
    body: JSON.stringify(requestParams),
    signal: ctrlAbout.signal,
    onmessage(e) {
      if (e.data === "[DONE]") {
        ctrlAbout.abort();
        resolve({ answer: responseRef.current, error: null });
        return;
      }
      if (e.data !== "[DONE]" && e.data) {
        let responseString = e.data;
        if (responseString.includes("(@n@)")) {
          responseString = responseString.replaceAll("(@n@)", "\n");
        }
        responseRef.current += responseString;
      }
    },
    onerror(error) {
      ctrlAbout.abort();
      resolve({ answer: responseRef.current, error: String(error) });
      throw error;
    },
  }).then(
    () => resolve({ answer: responseRef.current, error: "closed without [DONE]" }),
    (error) => resolve({ answer: responseRef.current, error: String(error) }),
  );
});
process.stdout.write(JSON.stringify(result) + "\n");
