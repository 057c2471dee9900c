// The page's behaviour: draw on the canvas or pick/drop a file, send it to POST /recognize.json,
// show the answer, the ten probabilities and the 28x28 picture the model read.
"use strict";

const ENDPOINT = "recognize.json?model_input=true";

const pad = document.getElementById("pad");
const context = pad.getContext("2d");
const statusLine = document.getElementById("status");
const chart = document.querySelectorAll("#chart li");
const modelInput = document.getElementById("model-input");
const modelInputCaption = document.getElementById("model-input-caption");
const drop = document.getElementById("drop");
const fileInput = document.getElementById("file");

let drawn = false;
let stroke = null; // the pointer's last points while a stroke is drawn
let pending = null; // the request in flight, aborted when a newer one starts

function clearPad() {
  context.fillStyle = "#ffffff";
  context.fillRect(0, 0, pad.width, pad.height);
  drawn = false;
}

function padPoint(event) {
  const box = pad.getBoundingClientRect();
  return {
    x: ((event.clientX - box.left) * pad.width) / box.width,
    y: ((event.clientY - box.top) * pad.height) / box.height,
  };
}

function startStroke(event) {
  if (event.button !== 0) return;
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  const point = padPoint(event);
  stroke = [point, point];
  context.lineWidth = pad.width / 14;
  context.lineCap = "round";
  context.lineJoin = "round";
  context.strokeStyle = "#000000";
  context.fillStyle = "#000000";
  context.beginPath();
  context.arc(point.x, point.y, context.lineWidth / 2, 0, 2 * Math.PI);
  context.fill();
  drawn = true;
}

function extendStroke(event) {
  if (!stroke) return;
  event.preventDefault();
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const each of events.length ? events : [event]) {
    // A quadratic curve through the midpoints between samples: smooth, with no corners between them.
    const point = padPoint(each);
    const [before, last] = stroke;
    context.beginPath();
    context.moveTo((before.x + last.x) / 2, (before.y + last.y) / 2);
    context.quadraticCurveTo(last.x, last.y, (last.x + point.x) / 2, (last.y + point.y) / 2);
    context.stroke();
    stroke = [last, point];
  }
}

function endStroke() {
  if (!stroke) return;
  stroke = null;
  recognizeDrawing();
}

function recognizeDrawing() {
  if (!drawn) {
    showError("Draw a digit first: the canvas is blank.");
    return;
  }
  pad.toBlob((blob) => send(blob, "drawing.png"), "image/png");
}

function recognizeFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    showError(`${file.name} is not an image: choose a photo, scan or drawing of a digit.`);
    return;
  }
  send(file, file.name);
}

async function send(blob, name) {
  if (pending) pending.abort();
  pending = new AbortController();
  const form = new FormData();
  form.append("image", blob, name);
  statusLine.classList.remove("error");
  statusLine.setAttribute("aria-busy", "true");
  try {
    const response = await fetch(ENDPOINT, { method: "POST", body: form, signal: pending.signal });
    const answer = await response.json().catch(() => null);
    if (!response.ok || !answer || answer.error) {
      showError(explain(response.status, answer && answer.error));
      return;
    }
    showAnswer(answer);
  } catch (error) {
    if (error.name !== "AbortError") showError("The service could not be reached. Try again in a moment.");
  } finally {
    statusLine.removeAttribute("aria-busy");
  }
}

function explain(status, error) {
  const code = error && error.code;
  if (code === "no_digit") return "No digit found: draw or photograph one digit, dark on light or light on dark.";
  if (code === "invalid_image") return "That file could not be read as an image. Try a PNG, JPEG, GIF, BMP, TIFF or WebP.";
  if (code === "image_too_large" || status === 413) return "That image is too large. Try a smaller photo.";
  return (error && error.message) || `The service answered with an error (HTTP ${status}).`;
}

function showAnswer(answer) {
  const percent = Math.round(answer.confidence * 100);
  statusLine.textContent = `${answer.digit} \u2014 ${percent}% sure`;
  answer.probabilities.forEach((probability, digit) => {
    const row = chart[digit];
    row.querySelector(".fill").style.width = `${(probability * 100).toFixed(1)}%`;
    row.querySelector(".value").textContent = `${Math.round(probability * 100)}%`;
    row.classList.toggle("winner", digit === answer.digit);
  });
  modelInput.src = answer.model_input;
  modelInput.alt = `The 28 by 28 picture the model read as ${answer.digit}`;
  modelInput.hidden = false;
  modelInputCaption.hidden = false;
}

function showError(message) {
  resetAnswer();
  statusLine.textContent = message;
  statusLine.classList.add("error");
}

function resetAnswer() {
  statusLine.classList.remove("error");
  chart.forEach((row) => {
    row.querySelector(".fill").style.width = "0";
    row.querySelector(".value").textContent = "\u2013";
    row.classList.remove("winner");
  });
  modelInput.hidden = true;
  modelInputCaption.hidden = true;
}

pad.addEventListener("pointerdown", startStroke);
pad.addEventListener("pointermove", extendStroke);
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);
document.getElementById("recognize").addEventListener("click", recognizeDrawing);
document.getElementById("clear").addEventListener("click", () => {
  if (pending) pending.abort();
  clearPad();
  resetAnswer();
  statusLine.textContent = "Cleared. Draw a digit or upload an image.";
});
fileInput.addEventListener("change", () => recognizeFile(fileInput.files[0]));
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("dragging");
});
drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("dragging");
  recognizeFile(event.dataTransfer.files[0]);
});

clearPad();
