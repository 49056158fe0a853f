"""The rating page: plain HTML and a little JavaScript, no files to serve beside it."""

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>t2v rate</title>
<style>
body{font-family:sans-serif;margin:1.5em;max-width:1100px}
#prompt{font-size:1.4em;margin:.6em 0}
.videos{display:flex;gap:16px}.videos figure{margin:0;flex:1;text-align:center}
video{width:100%;max-height:60vh;background:#111;image-rendering:pixelated}
.question{margin:.8em 0}.question button{font-size:1em;margin-right:.5em;padding:.3em .8em}
button.chosen{background:#2a6;color:#fff}kbd{border:1px solid #999;border-radius:3px;padding:0 4px}
#error{color:#b00}[hidden]{display:none}
</style></head><body>
<h1>Which clip is better?</h1>
<form id="login"><label>Your name <input id="rater" autocomplete="name" required maxlength="64" autofocus></label>
<button type="submit">Start</button><p>Each rater rates each pair once; your answers are saved as you give them.</p></form>
<section id="rate" hidden>
<p id="progress"></p>
<p id="prompt"></p>
<div class="videos">
<figure><video id="left" autoplay loop muted playsinline></video><figcaption>left</figcaption></figure>
<figure><video id="right" autoplay loop muted playsinline></video><figcaption>right</figcaption></figure>
</div>
<div class="question" data-question="quality">Which looks better?
<button data-answer="left"><kbd>A</kbd> left</button><button data-answer="same"><kbd>S</kbd> same</button>
<button data-answer="right"><kbd>D</kbd> right</button></div>
<div class="question" data-question="text">Which follows the text better?
<button data-answer="left"><kbd>J</kbd> left</button><button data-answer="same"><kbd>K</kbd> same</button>
<button data-answer="right"><kbd>L</kbd> right</button></div>
<button id="submit" disabled><kbd>Enter</kbd> save and next</button>
<small>&nbsp; <kbd>Space</kbd> replays both clips</small>
</section>
<p id="done" hidden>All pairs rated: thank you.</p>
<p id="error"></p>
<script>
const KEYS = {a: ["quality", "left"], s: ["quality", "same"], d: ["quality", "right"],
              j: ["text", "left"], k: ["text", "same"], l: ["text", "right"]};
let current = null, chosen = {};
const $ = (id) => document.getElementById(id);

async function api(path, body) {
  const response = await fetch(path, body === undefined ? {} :
    {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const data = await response.json();
  if (!response.ok) throw new Error(data.detail || response.statusText);
  return data;
}

function show(data) {
  $("error").textContent = "";
  $("progress").textContent = `${data.answered} / ${data.total} rated`;
  current = data.pair; chosen = {};
  document.querySelectorAll(".question button").forEach((b) => b.classList.remove("chosen"));
  $("submit").disabled = true;
  $("rate").hidden = current === null; $("done").hidden = current !== null;
  if (current === null) { $("done").textContent = `All ${data.total} pairs rated: thank you.`; return; }
  $("prompt").textContent = current.prompt;
  $("left").src = current.left; $("right").src = current.right;
}

function choose(question, answer) {
  if (current === null) return;
  chosen[question] = answer;
  document.querySelectorAll(`[data-question=${question}] button`).forEach(
    (b) => b.classList.toggle("chosen", b.dataset.answer === answer));
  $("submit").disabled = !(chosen.quality && chosen.text);
}

async function submit() {
  if (current === null || !(chosen.quality && chosen.text)) return;
  const body = {rater: sessionStorage.getItem("t2v-rater"), pair_id: current.pair_id, left_run: current.left_run,
                shown_at: current.shown_at, quality: chosen.quality, text: chosen.text};
  current = null;  // a second Enter must not send the answer twice
  try { show(await api("/api/answer", body)); } catch (error) { $("error").textContent = error.message; }
}

async function start() {
  $("login").hidden = true;
  try { show(await api("/api/next?rater=" + encodeURIComponent(sessionStorage.getItem("t2v-rater")))); }
  catch (error) { $("error").textContent = error.message; $("login").hidden = false; }
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("t2v-rater", $("rater").value.trim());
  start();
});
document.querySelectorAll(".question button").forEach((b) =>
  b.addEventListener("click", () => choose(b.parentElement.dataset.question, b.dataset.answer)));
$("submit").addEventListener("click", submit);
document.addEventListener("keydown", (event) => {
  if (!$("login").hidden || event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key.toLowerCase();
  if (KEYS[key]) { choose(...KEYS[key]); }
  else if (key === "enter") { event.preventDefault(); submit(); }
  else if (key === " ") { event.preventDefault(); for (const v of [$("left"), $("right")]) { v.currentTime = 0; v.play(); } }
});
if (sessionStorage.getItem("t2v-rater")) start();
</script></body></html>
"""

TOKEN_NEEDED = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>t2v rate</title></head>
<body><h1 id="token-needed">This rating page needs its token</h1>
<p>Open the link you were given, which ends in <code>/?token=...</code>.</p></body></html>
"""
