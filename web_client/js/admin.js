// The school admin's page: sign in once (a session cookie), then schools, rooms,
// teachers, pairings, the timetable, device and teacher links (with a QR code drawn by
// the server), attendance and the district summary, and today's ad-hoc lesson.
// Every change is one call of the documented API (docs/protocol.md); after it the
// page reads the state back rather than guess it.

import { initI18n, t, onLangChange } from "./i18n.js";
import "./admin_strings.js";
import { call } from "./admin_api.js";
import { h, byTestId } from "./ui.js";

initI18n();

/** @type {{schools: any[], occurrences: any[], tab: string, summaryWeeks: number}} */
const state = { schools: [], occurrences: [], tab: "schools", summaryWeeks: 4 };
let qrUrl = "";

const errorEl = byTestId("admin-error");
function showError(err) {
  errorEl.textContent = err ? t("error.generic", { message: err.message || String(err) }) : "";
}

async function act(fn) {
  showError(null);
  try {
    await fn();
  } catch (err) {
    showError(err);
  }
}

// -- sign in and out ---------------------------------------------------------------

async function start() {
  const me = await call("GET", "/api/admin/session").catch(() => ({ signed_in: false }));
  byTestId("signin").hidden = me.signed_in;
  byTestId("signed-in").hidden = !me.signed_in;
  byTestId("signout").hidden = !me.signed_in;
  if (me.signed_in) {
    showTab(location.hash.replace("#", "") || "schools");
  } else {
    /** @type {HTMLInputElement} */ (byTestId("admin-key")).focus();
  }
}

byTestId("signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = /** @type {HTMLInputElement} */ (byTestId("admin-key"));
  const err = byTestId("signin-error");
  err.textContent = "";
  try {
    await call("POST", "/api/admin/session", { body: { key: input.value.trim() } });
    input.value = "";
    await start();
  } catch (e) {
    err.textContent = e.code === "wrong_key" ? t("adm.wrong_key") : t("error.generic", { message: e.message });
  }
});

byTestId("signout").addEventListener("click", () => act(async () => {
  await call("DELETE", "/api/admin/session");
  await start();
}));

// -- tabs --------------------------------------------------------------------------

document.querySelectorAll("[data-tab]").forEach((button) => {
  button.addEventListener("click", () => showTab(/** @type {HTMLElement} */ (button).dataset.tab || "schools"));
});

function showTab(tab) {
  state.tab = ["schools", "timetable", "attendance", "adhoc"].includes(tab) ? tab : "schools";
  history.replaceState(null, "", `#${state.tab}`);
  document.querySelectorAll("[data-panel]").forEach((el) => {
    /** @type {HTMLElement} */ (el).hidden = /** @type {HTMLElement} */ (el).dataset.panel !== state.tab;
  });
  document.querySelectorAll("[data-tab]").forEach((el) => {
    el.classList.toggle("secondary", /** @type {HTMLElement} */ (el).dataset.tab !== state.tab);
  });
  act(refresh);
}

async function refresh() {
  state.schools = (await call("GET", "/api/schools")).schools;
  if (state.tab === "schools") renderSchools();
  if (state.tab === "timetable") {
    state.occurrences = (await call("GET", "/api/timetable?days=28")).occurrences;
    renderEntryForm();
    renderOccurrences();
  }
  if (state.tab === "attendance") await renderAttendance();
}

// -- the link panel (a device or teacher link, shown once, with its QR code) ----------

async function showLink(titleKey, hintKey, name, url) {
  byTestId("link-title").textContent = t(titleKey, { name });
  byTestId("link-hint").textContent = t(hintKey);
  /** @type {HTMLInputElement} */ (byTestId("link-url")).value = url;
  byTestId("link-open").setAttribute("href", url);
  const svg = await call("POST", "/api/admin/qr", { body: { text: url }, as: "blob" });
  if (qrUrl) URL.revokeObjectURL(qrUrl);
  qrUrl = URL.createObjectURL(svg);
  byTestId("link-qr").setAttribute("src", qrUrl);
  byTestId("link-panel").hidden = false;
  byTestId("link-panel").scrollIntoView({ block: "nearest" });
}

byTestId("link-close").addEventListener("click", () => {
  byTestId("link-panel").hidden = true;
  /** @type {HTMLInputElement} */ (byTestId("link-url")).value = "";
  byTestId("link-qr").removeAttribute("src");
});
byTestId("link-copy").addEventListener("click", async () => {
  const input = /** @type {HTMLInputElement} */ (byTestId("link-url"));
  try { await navigator.clipboard.writeText(input.value); } catch (_) { input.select(); }
  byTestId("link-copy").textContent = t("adm.copied");
  setTimeout(() => { byTestId("link-copy").textContent = t("adm.copy"); }, 1500);
});

// -- schools, rooms, teachers, pairings --------------------------------------------

byTestId("school-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const name = /** @type {HTMLInputElement} */ (byTestId("school-name"));
  const kind = /** @type {HTMLSelectElement} */ (byTestId("school-kind"));
  act(async () => {
    await call("POST", "/api/schools", { body: { name: name.value, kind: kind.value } });
    name.value = "";
    await refresh();
  });
});

function confirmed(key, params) {
  return window.confirm(t(key, params));
}

/** A small inline form: an input and a button that calls `submit(value)`. */
function addForm(placeholderKey, testid, submit) {
  const input = h("input", { maxlength: "80", placeholder: t(placeholderKey), dataset: { testid: `${testid}-name` } });
  const form = h("form", { class: "row", novalidate: true },
    input, h("button", { type: "submit", class: "good", dataset: { testid: `${testid}-add` } }, t("adm.add")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(async () => { await submit(/** @type {HTMLInputElement} */ (input).value); await refresh(); });
  });
  return form;
}

function roomItem(room) {
  return h("li", { dataset: { testid: "room", name: room.name } },
    h("strong", {}, room.name), " ",
    h("span", { class: "hint" }, t(room.device_link ? "adm.device_on" : "adm.device_off")), " ",
    h("button", {
      class: "secondary", dataset: { testid: "device-new" },
      onclick: () => act(async () => {
        if (room.device_link && !confirmed("adm.device_new_confirm")) return;
        const made = await call("POST", `/api/rooms/${room.id}/device`);
        await refresh();
        await showLink("adm.link_device", "adm.link_device_hint", room.name, made.device_url);
      }),
    }, t("adm.device_new")), " ",
    room.device_link ? h("button", {
      class: "secondary", dataset: { testid: "device-revoke" },
      onclick: () => act(async () => {
        if (!confirmed("adm.device_revoke_confirm")) return;
        await call("DELETE", `/api/rooms/${room.id}/device`);
        await refresh();
      }),
    }, t("adm.device_revoke")) : null, " ",
    h("button", {
      class: "danger", dataset: { testid: "room-remove" },
      onclick: () => act(async () => {
        if (!confirmed("adm.remove_confirm", { name: room.name })) return;
        await call("DELETE", `/api/rooms/${room.id}`);
        await refresh();
      }),
    }, t("adm.remove")));
}

function teacherItem(teacher) {
  return h("li", { dataset: { testid: "teacher", name: teacher.name } },
    h("strong", {}, teacher.name), " ",
    h("button", {
      class: "secondary", dataset: { testid: "teacher-link-new" },
      onclick: () => act(async () => {
        if (!confirmed("adm.teacher_link_confirm")) return;
        const made = await call("POST", `/api/teachers/${teacher.id}/link`);
        await showLink("adm.link_teacher", "adm.link_teacher_hint", teacher.name, made.link.url);
      }),
    }, t("adm.teacher_link_new")), " ",
    h("button", {
      class: "danger", dataset: { testid: "teacher-remove" },
      onclick: () => act(async () => {
        if (!confirmed("adm.remove_confirm", { name: teacher.name })) return;
        await call("DELETE", `/api/teachers/${teacher.id}`);
        await refresh();
      }),
    }, t("adm.remove")));
}

function pairings(school) {
  const taught = new Set(school.teaches.map((r) => r.id));
  const rural = state.schools.filter((s) => s.kind === "rural")
    .flatMap((s) => s.rooms.map((r) => ({ ...r, school: s.name })))
    .filter((r) => !taught.has(r.id));
  const select = /** @type {HTMLSelectElement} */ (h("select", { dataset: { testid: "pair-room" } },
    h("option", { value: "" }, t("adm.pick_room")),
    rural.map((r) => h("option", { value: r.id }, `${r.school} · ${r.name}`))));
  const pair = h("button", {
    class: "good", dataset: { testid: "pair-add" },
    onclick: () => act(async () => {
      if (!select.value) return;
      await call("POST", `/api/schools/${school.id}/pairings`, { body: { room_id: select.value } });
      await refresh();
    }),
  }, t("adm.pair"));
  return h("div", {},
    h("h3", {}, t("adm.teaches")),
    h("ul", {}, school.teaches.map((r) => h("li", { dataset: { testid: "paired", name: `${r.school} · ${r.name}` } },
      `${r.school} · ${r.name} `,
      h("button", {
        class: "secondary",
        onclick: () => act(async () => {
          await call("DELETE", `/api/schools/${school.id}/pairings/${r.id}`);
          await refresh();
        }),
      }, t("adm.unpair"))))),
    h("div", { class: "row" }, select, pair));
}

function renderSchools() {
  const root = byTestId("schools");
  if (!state.schools.length) {
    root.replaceChildren(h("p", { class: "hint" }, t("adm.no_schools")));
    return;
  }
  root.replaceChildren(...state.schools.map((school) => {
    const urban = school.kind === "urban";
    return h("div", { class: "card", dataset: { testid: "school", name: school.name, kind: school.kind } },
      h("h2", {}, school.name, " ", h("span", { class: "hint" }, t(`adm.kind.${school.kind}`))),
      h("h3", {}, t("adm.rooms")),
      school.rooms.length ? h("ul", {}, school.rooms.map(roomItem)) : h("p", { class: "hint" }, t("adm.no_rooms")),
      addForm("adm.room_name", "room", async (name) => {
        const made = await call("POST", `/api/schools/${school.id}/rooms`, { body: { name } });
        await refresh();
        await showLink("adm.link_device", "adm.link_device_hint", made.name, made.device_url);
      }),
      h("h3", {}, t("adm.teachers")),
      school.teachers.length ? h("ul", {}, school.teachers.map(teacherItem)) : h("p", { class: "hint" }, t("adm.no_teachers")),
      addForm("adm.teacher_name", "teacher", async (name) => {
        const made = await call("POST", `/api/schools/${school.id}/teachers`, { body: { name } });
        await showLink("adm.link_teacher", "adm.link_teacher_hint", made.name, made.link.url);
      }),
      urban ? pairings(school) : null);
  }));
}

// -- the timetable -----------------------------------------------------------------

function teachers() {
  return state.schools.flatMap((s) => s.teachers.map((tc) => ({ ...tc, school: s })));
}

function renderEntryForm() {
  const select = /** @type {HTMLSelectElement} */ (byTestId("tt-teacher"));
  const chosen = select.value;
  select.replaceChildren(h("option", { value: "" }, t("adm.pick_teacher")),
    ...teachers().map((tc) => h("option", { value: tc.id }, `${tc.name} · ${tc.school.name}`)));
  select.value = chosen;
  renderRoomChoices();
}

function renderRoomChoices() {
  const select = /** @type {HTMLSelectElement} */ (byTestId("tt-teacher"));
  const teacher = teachers().find((tc) => tc.id === select.value);
  const rooms = teacher ? [...teacher.school.rooms, ...teacher.school.teaches] : [];
  byTestId("tt-rooms").replaceChildren(...rooms.map((r) => h("label", { class: "check" },
    h("input", { type: "checkbox", value: r.id, dataset: { testid: "tt-room" } }), ` ${r.school} · ${r.name}`)));
}

byTestId("tt-teacher").addEventListener("change", renderRoomChoices);

byTestId("entry-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const err = byTestId("tt-error");
  const value = (id) => /** @type {HTMLInputElement} */ (byTestId(id)).value.trim();
  const rooms = Array.from(document.querySelectorAll("[data-testid=tt-room]"))
    .filter((el) => /** @type {HTMLInputElement} */ (el).checked)
    .map((el) => /** @type {HTMLInputElement} */ (el).value);
  err.textContent = "";
  if (!value("tt-teacher")) return void (err.textContent = t("adm.need_teacher"));
  if (!rooms.length) return void (err.textContent = t("adm.need_rooms"));
  if (!value("tt-start")) return void (err.textContent = t("adm.need_start"));
  const body = {
    title: value("tt-title"),
    teacher_id: value("tt-teacher"),
    room_ids: rooms,
    starts_at: value("tt-start"),
    duration_min: Number(value("tt-duration")),
    repeat: value("tt-until") ? { weekly_until: value("tt-until") } : null,
  };
  (async () => {
    try {
      await call("POST", "/api/timetable", { body });
      /** @type {HTMLInputElement} */ (byTestId("tt-title")).value = "";
      await refresh();
    } catch (e) {
      err.textContent = t("error.generic", { message: e.message });
    }
  })();
});

function when(iso) {
  return iso.slice(0, 16).replace("T", " ");
}

function renderOccurrences() {
  const body = byTestId("occurrences").querySelector("tbody");
  if (!state.occurrences.length) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: "6", class: "hint" }, t("adm.no_upcoming"))));
    return;
  }
  body.replaceChildren(...state.occurrences.map((o) => {
    const base = `/api/timetable/${o.entry_id}/occurrences/${o.on}`;
    const move = /** @type {HTMLInputElement} */ (h("input", { type: "datetime-local", value: o.starts_at.slice(0, 16) }));
    const actions = o.state === "scheduled" ? [
      h("button", {
        class: "secondary", dataset: { testid: "cancel-week" },
        onclick: () => act(async () => {
          if (!confirmed("adm.cancel_week_confirm", { on: o.on })) return;
          await call("PUT", base, { body: { cancelled: true } });
          await refresh();
        }),
      }, t("adm.cancel_week")),
      h("span", { class: "row" }, move, h("button", {
        class: "secondary", dataset: { testid: "move-week" },
        onclick: () => act(async () => {
          await call("PUT", base, { body: { moved_to: move.value } });
          await refresh();
        }),
      }, t("adm.move_week"))),
    ] : [];
    if (o.lesson_id) {
      actions.push(h("a", { class: "button secondary", href: `/attendance#lesson=${encodeURIComponent(o.lesson_id)}`, dataset: { testid: "attendance-link" } }, t("adm.attendance")));
    }
    actions.push(h("button", {
      class: "danger",
      onclick: () => act(async () => {
        if (!confirmed("adm.remove_confirm", { name: o.title })) return;
        await call("DELETE", `/api/timetable/${o.entry_id}`);
        await refresh();
      }),
    }, t("adm.remove_entry")));
    return h("tr", { dataset: { testid: "occurrence", entry: o.entry_id, on: o.on, state: o.state } },
      h("td", {}, when(o.starts_at), o.moved ? ` ${t("adm.moved")}` : ""),
      h("td", {}, o.title),
      h("td", {}, o.teacher.name),
      h("td", {}, o.rooms.map((r) => `${r.school} · ${r.name}`).join("、")),
      h("td", {}, t(`adm.state.${o.state}`)),
      h("td", { class: "actions" }, actions));
  }));
}

// -- attendance and the district summary ---------------------------------------------

byTestId("summary-weeks").addEventListener("change", (ev) => {
  state.summaryWeeks = Number(/** @type {HTMLSelectElement} */ (ev.target).value);
  act(renderAttendance);
});

async function renderAttendance() {
  const summary = await call("GET", `/api/district/summary?weeks=${state.summaryWeeks}`);
  const table = byTestId("summary");
  table.querySelector("thead").replaceChildren(h("tr", {},
    h("th", {}, t("adm.col.school")), h("th", {}, t("adm.col.room")),
    summary.weeks.map((w) => h("th", {}, t("adm.week_of", { date: w.slice(5) }))),
    h("th", {}, t("adm.col.share"))));
  table.querySelector("tbody").replaceChildren(...summary.rooms.map((r) => h("tr", { dataset: { testid: "summary-room", room: r.room_id } },
    h("td", {}, r.school), h("td", {}, r.name),
    r.weeks.map((w) => h("td", {}, w.scheduled ? `${w.attended} / ${w.scheduled}` : "—")),
    h("td", { dataset: { testid: "share" } }, r.share === null ? "—" : `${Math.round(r.share * 100)}%`))));
  const recent = (await call("GET", "/api/lessons?days=30")).lessons;
  byTestId("recent").replaceChildren(...(recent.length ? recent.map((l) => h("li", {},
    h("a", { href: `/attendance#lesson=${encodeURIComponent(l.id)}`, dataset: { testid: "recent-lesson" } },
      `${when(l.created_at)} · ${l.title}`), " ", h("span", { class: "hint" }, t(`adm.state.${l.state}`))))
    : [h("li", { class: "hint" }, t("adm.no_recent"))]));
}

// -- today's ad-hoc lesson -----------------------------------------------------------

byTestId("adhoc-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const title = /** @type {HTMLInputElement} */ (byTestId("adhoc-title")).value.trim();
  const names = /** @type {HTMLTextAreaElement} */ (byTestId("adhoc-rooms")).value.split("\n").map((n) => n.trim()).filter(Boolean);
  act(async () => {
    const made = await call("POST", "/api/lessons", { body: { title, classrooms: names } });
    const out = byTestId("adhoc-result");
    out.replaceChildren(
      h("h2", {}, made.title),
      h("label", {}, t("adm.adhoc_teacher")),
      h("div", { class: "linkrow" }, h("input", { readonly: true, value: made.teacher.url })),
      h("table", {}, h("tbody", {}, made.classrooms.map((c) => h("tr", {},
        h("td", {}, c.name), h("td", { class: "mono" }, c.code),
        h("td", {}, h("input", { readonly: true, value: c.url })))))),
      h("a", { class: "button secondary", href: `/attendance#lesson=${encodeURIComponent(made.id)}` }, t("adm.attendance")));
    out.hidden = false;
  });
});

onLangChange(() => { if (!byTestId("signed-in").hidden) act(refresh); });

start();
