// The home page: the school creates a lesson with its admin key (asked once, kept in
// this browser), then hands out the links and the classrooms' 6-digit codes.

import "./home_strings.js";
import { initI18n, t, onLangChange } from "./i18n.js";
import { createLesson } from "./api.js";
import { h, byTestId } from "./ui.js";

const KEY_STORAGE = "classroom.admin_key";

initI18n();
const form = /** @type {HTMLFormElement} */ (byTestId("create-form"));
const keyInput = /** @type {HTMLInputElement} */ (byTestId("admin-key"));
const titleInput = /** @type {HTMLInputElement} */ (byTestId("lesson-title-input"));
const namesInput = /** @type {HTMLTextAreaElement} */ (byTestId("classroom-names"));
const error = byTestId("create-error");
const submit = /** @type {HTMLButtonElement} */ (byTestId("create-submit"));
/** @type {any} */
let created = null;
let errorKey = "";
let errorParams = undefined;

try { keyInput.value = localStorage.getItem(KEY_STORAGE) || ""; } catch (_) { /* no storage */ }

function showError(key, params) {
  errorKey = key;
  errorParams = params;
  error.textContent = key ? t(key, params) : "";
}

onLangChange(() => {
  showError(errorKey, errorParams);
  submit.textContent = t("home.create");
  if (created) renderCreated();
});

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const adminKey = keyInput.value.trim();
  const title = titleInput.value.trim();
  const names = namesInput.value.split("\n").map((n) => n.trim()).filter(Boolean);
  if (!adminKey) return showError("home.need_key"), keyInput.focus();
  if (!title) return showError("home.need_title"), titleInput.focus();
  if (names.length === 0) return showError("home.need_classrooms"), namesInput.focus();
  showError("");
  submit.disabled = true;
  submit.textContent = t("home.creating");
  try {
    created = await createLesson(adminKey, title, names);
    try { localStorage.setItem(KEY_STORAGE, adminKey); } catch (_) { /* not kept */ }
    renderCreated();
  } catch (err) {
    if (err.status === 401 || err.status === 403) {
      try { localStorage.removeItem(KEY_STORAGE); } catch (_) { /* nothing kept */ }
      showError("home.bad_key");
      keyInput.select();
    } else if (err.status === 0) {
      showError("error.network");
    } else {
      showError("error.generic", { message: err.message });
    }
  } finally {
    submit.disabled = false;
    submit.textContent = t("home.create");
  }
});

byTestId("print").addEventListener("click", () => window.print());
byTestId("new-lesson").addEventListener("click", () => {
  created = null;
  byTestId("created").hidden = true;
  byTestId("create").hidden = false;
  titleInput.value = "";
  namesInput.value = "";
});

function absolute(url) {
  return new URL(url, location.origin).href;
}

function linkRow(url, testid) {
  const input = h("input", { readonly: true, value: url, dataset: { testid: `${testid}-url` }, onfocus: (e) => e.target.select() });
  const copy = h("button", { class: "secondary", dataset: { testid: `${testid}-copy` } }, t("home.copy"));
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(url);
    } catch (_) {
      // Clipboard API needs a secure origin; the selected text can still be copied.
      input.select();
      document.execCommand && document.execCommand("copy");
    }
    copy.textContent = t("home.copied");
    setTimeout(() => { copy.textContent = t("home.copy"); }, 1500);
  });
  return [input, copy, h("a", { class: "button secondary", href: url, target: "_blank", rel: "noopener" }, t("home.open"))];
}

function renderCreated() {
  byTestId("create").hidden = true;
  byTestId("created").hidden = false;
  byTestId("created-title").textContent = t("home.result", { title: created.title });
  byTestId("teacher-link").replaceChildren(...linkRow(absolute(created.teacher.url), "teacher"));
  byTestId("observer-link").replaceChildren(...linkRow(absolute(created.observer.url), "observer"));
  byTestId("join-hint").textContent = t("home.join_hint", { url: absolute("/join") });
  byTestId("classroom-codes").querySelector("tbody").replaceChildren(
    ...created.classrooms.map((room) =>
      h(
        "tr",
        { dataset: { testid: "classroom-code-row", id: room.id } },
        h("td", {}, room.name),
        h("td", { class: "code-big", dataset: { testid: "classroom-code" } }, room.code),
        h("td", {}, h("div", { class: "linkrow" }, ...linkRow(absolute(room.url), "classroom"))),
      ),
    ),
  );
}
