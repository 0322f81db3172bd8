// The join page: a classroom types the 6-digit code it was given, and goes to its
// lesson page (the address the server hands back, which carries its token).

import "./join_strings.js";
import { initI18n, t, onLangChange } from "./i18n.js";
import { joinByCode } from "./api.js";
import { byTestId } from "./ui.js";

initI18n();
const form = /** @type {HTMLFormElement} */ (byTestId("join-form"));
const input = /** @type {HTMLInputElement} */ (byTestId("join-code"));
const error = byTestId("join-error");
const submit = /** @type {HTMLButtonElement} */ (byTestId("join-submit"));
byTestId("connection").hidden = true;
let lastErrorKey = "";

function showError(key, params) {
  lastErrorKey = key;
  error.textContent = key ? t(key, params) : "";
}
onLangChange(() => showError(lastErrorKey));

input.addEventListener("input", () => {
  // Digits only; a code pasted with spaces ("123 456") still works.
  input.value = input.value.replace(/\D/g, "").slice(0, 6);
  if (lastErrorKey) showError("");
});

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const code = input.value.replace(/\D/g, "");
  if (code.length !== 6) {
    showError("join.bad_format");
    input.focus();
    return;
  }
  submit.disabled = true;
  submit.textContent = t("join.joining");
  try {
    const joined = await joinByCode(code);
    location.assign(joined.url);
  } catch (err) {
    // docs/protocol.md, HTTP error codes.
    if (err.code === "unknown_code" || err.status === 404 || err.status === 422) showError("join.wrong_code");
    else if (err.code === "lesson_ended" || err.status === 409) showError("join.ended");
    else if (err.code === "too_many_attempts" || err.status === 429) showError("join.too_many");
    else if (err.status === 0) showError("error.network");
    else showError("error.generic", { message: err.message });
    input.select();
  } finally {
    submit.disabled = false;
    submit.textContent = t("join.button");
  }
});
