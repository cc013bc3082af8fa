"use strict";
// Shared by the console's two pages: element helpers and the refresh loop.
// Each page defines show(data) and calls keepRefreshing(dataUrl, show, milliseconds).
const el = (id) => document.getElementById(id);
const text = (id, value) => { el(id).textContent = value === null || value === undefined || value === "" ? "-" : value; };

// Reads the page's JSON (same origin: the UI's session cookie goes with it), shows it, and again after `every` ms.
async function keepRefreshing(dataUrl, show, every) {
  try {
    const response = await fetch(dataUrl, {credentials: "same-origin", cache: "no-store"});
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.detail || response.status + " " + response.statusText);
    show(body);
    el("updated").textContent = new Date().toLocaleTimeString();
  } catch (err) {
    el("problem").textContent = "could not refresh: " + err.message;
  } finally {
    setTimeout(() => keepRefreshing(dataUrl, show, every), every);
  }
}
