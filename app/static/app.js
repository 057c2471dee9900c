// The page's behaviour: draw on the canvas or pick/drop a file, send it to POST /read.json, show the
// text read, each digit boxed over the picture, and for the chosen digit its ten probabilities and the
// 28x28 picture the model read. A refusal shows the picture and the closest reading.
"use strict";

const ENDPOINT = "read.json?model_input=true";
const PEN_REST_MS = 900; // a drawing's refusal waits until the pen has rested this long: the number may go on
const UNSURE = 0.5; // a reading less sure than this is offered as a guess, not as the answer

const pad = document.getElementById("pad");
const context = pad.getContext("2d");
const statusLine = document.getElementById("status");
const chart = document.querySelectorAll("#chart li");
const modelInput = document.getElementById("model-input");
const modelInputCaption = document.getElementById("model-input-caption");
const chartLabel = document.getElementById("chart-label");
const view = document.getElementById("view");
const digitList = document.getElementById("digits");
const drop = document.getElementById("drop");
const fileInput = document.getElementById("file");

let drawn = false;
let stroke = null; // the pointer's last points while a stroke is drawn
let pending = null; // the request in flight, aborted when a newer one starts
let shown = null; // the reading on show: {reading, picture (an ImageBitmap), chosen (a digit's index)}
let penLifted = 0; // when the pen last left the canvas (performance.now())
let waitingRefusal = null; // the timer of a drawing's refusal waiting for the pen to rest

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
  clearTimeout(waitingRefusal);
  const point = padPoint(event);
  stroke = [point, point];
  context.lineWidth = pad.height / 14;
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
  penLifted = performance.now();
  recognizeDrawing();
}

function recognizeDrawing() {
  if (!drawn) {
    showError("Draw a digit or a number first: the canvas is blank.");
    return;
  }
  pad.toBlob((blob) => send(blob, "drawing.png", true), "image/png");
}

function recognizeFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    showError(`${file.name} is not an image: choose a photo, scan or drawing of a number.`);
    return;
  }
  send(file, file.name);
}

async function send(blob, name, drawing = false) {
  if (pending) pending.abort();
  clearTimeout(waitingRefusal);
  pending = new AbortController();
  const form = new FormData();
  form.append("image", blob, name);
  statusLine.classList.remove("error");
  statusLine.setAttribute("aria-busy", "true");
  try {
    const response = await fetch(ENDPOINT, { method: "POST", body: form, signal: pending.signal });
    const answer = await response.json().catch(() => null);
    const error = answer && answer.error;
    if (error && error.code === "not_a_digit" && error.closest) {
      const picture = await createImageBitmap(blob).catch(() => null);
      const rest = drawing ? PEN_REST_MS - (performance.now() - penLifted) : 0;
      waitingRefusal = setTimeout(() => showRefusal(error, picture), Math.max(rest, 0));
      return;
    }
    if (!response.ok || !answer || error) {
      showError(explain(response.status, error));
      return;
    }
    await showReading(answer, blob);
    bringIntoView();
  } catch (error) {
    if (error.name !== "AbortError") showError("The service could not be reached. Try again in a moment.");
  } finally {
    statusLine.removeAttribute("aria-busy");
  }
}

function explain(status, error) {
  const code = error && error.code;
  if (code === "no_digit") return "No digit found: write or photograph a number, dark on light or light on dark.";
  if (code === "not_a_digit") return "That looks like a letter, a mark or a drawing, not a number.";
  if (code === "too_many_digits") return "That is more digits than are read at once: write a shorter number.";
  if (code === "invalid_image") return "That file could not be read as an image. Try a PNG, JPEG, GIF, BMP, TIFF, WebP, HEIC or AVIF.";
  if (code === "image_too_large" || status === 413) return "That image is too large. Try a smaller photo.";
  return (error && error.message) || `The service answered with an error (HTTP ${status}).`;
}

function percent(probability) {
  // To a tenth of a percent near certainty, never "100%" short of it: 0.9986 reads 99.9%.
  const value = probability < 1 ? Math.min(Math.round(probability * 1000) / 10, 99.9) : 100;
  return value >= 99 ? `${value.toFixed(1)}%` : `${Math.round(value)}%`;
}

function bringIntoView() {
  // On a small screen the answer lies below the canvas: bring it up, no further than needed.
  const box = statusLine.getBoundingClientRect();
  if (box.top < 0 || box.bottom > window.innerHeight) statusLine.scrollIntoView({ block: "nearest" });
}

function showRefusal(error, picture) {
  const closest = error.closest;
  resetAnswer();
  statusLine.textContent = `${explain(422, error)} The closest reading is ${closest.text || closest.number} `
    + `(${percent(closest.confidence)} sure).`;
  statusLine.classList.add("error");
  if (picture) {
    shown = { reading: closest, picture, chosen: -1 };
    drawView();
  }
  bringIntoView();
}

async function showReading(reading, blob) {
  const text = reading.text || reading.number;
  statusLine.textContent = reading.confidence < UNSURE
    ? `Unsure: perhaps ${text}, ${percent(reading.confidence)} sure. Write it again more clearly?`
    : `${text} \u2014 ${percent(reading.confidence)} sure`;
  digitList.replaceChildren(...reading.digits.map((digit, index) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "digit";
    button.textContent = digit.digit;
    button.setAttribute("aria-label", `Digit ${index + 1}: ${digit.digit}, ${percent(digit.confidence)} sure`);
    button.addEventListener("click", () => choose(index));
    return button;
  }));
  shown = { reading, picture: await createImageBitmap(blob).catch(() => null), chosen: 0 };
  choose(0);
}

function choose(index) {
  shown.chosen = index;
  const digits = shown.reading.digits;
  const digit = digits[index];
  digitList.querySelectorAll("button").forEach((button, each) => button.setAttribute("aria-pressed", each === index));
  chartLabel.textContent = digits.length > 1
    ? `The probability of each digit for digit ${index + 1} of ${digits.length}`
    : "The probability of each digit";
  digit.probabilities.forEach((probability, value) => {
    const row = chart[value];
    row.querySelector(".fill").style.width = `${(probability * 100).toFixed(1)}%`;
    row.querySelector(".value").textContent = percent(probability);
    row.classList.toggle("winner", value === digit.digit);
  });
  // A digit the line reader read, rather than the segmenter, has no 28x28 picture of its own.
  modelInput.hidden = modelInputCaption.hidden = !digit.model_input;
  if (digit.model_input) {
    modelInput.src = digit.model_input;
    modelInput.alt = `The 28 by 28 picture the model read as ${digit.digit}`;
  }
  drawView();
}

function drawView() {
  // The picture sent, each digit's box over it, the chosen one in the accent colour.
  const { reading, picture, chosen } = shown;
  if (!picture) return;
  const scale = Math.min(view.width / picture.width, view.height / picture.height);
  const left = (view.width - picture.width * scale) / 2;
  const top = (view.height - picture.height * scale) / 2;
  const paint = view.getContext("2d");
  paint.fillStyle = "#f6f8fa";
  paint.fillRect(0, 0, view.width, view.height);
  paint.drawImage(picture, left, top, picture.width * scale, picture.height * scale);
  paint.font = "bold 16px system-ui, sans-serif";
  reading.digits.forEach((digit, index) => {
    const { x, y, width, height } = digit.box;
    paint.strokeStyle = paint.fillStyle = index === chosen ? "#0a58ca" : "#f59f00";
    paint.lineWidth = index === chosen ? 3 : 2;
    paint.strokeRect(left + x * scale, top + y * scale, width * scale, height * scale);
    paint.fillText(`${digit.digit}`, left + x * scale + 2, Math.max(top + y * scale - 4, 14));
  });
  view.setAttribute("aria-label", chosen < 0
    ? `The picture, refused: the closest reading ${reading.number} boxed`
    : `The picture read as ${reading.text || reading.number}, each digit boxed`);
  view.hidden = false;
}

function showError(message) {
  resetAnswer();
  statusLine.textContent = message;
  statusLine.classList.add("error");
}

function resetAnswer() {
  statusLine.classList.remove("error");
  shown = null;
  view.hidden = true;
  digitList.replaceChildren();
  chartLabel.textContent = "The probability of each digit";
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
  clearTimeout(waitingRefusal);
  clearPad();
  resetAnswer();
  statusLine.textContent = "Cleared. Write a digit or a number, or upload an image.";
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
