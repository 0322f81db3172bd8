// Times of the timetable as the server writes them (docs/protocol.md: ISO 8601 with the
// offset of the timetable's zone, "2023-12-05T14:00:00+08:00"). A projector PC's clock
// and zone are often wrong: the pages read the wall-clock time from the string itself
// and compare dates with the server's own `now`, never with the browser's.

import "./room_strings.js";
import { t } from "./i18n.js";

/** "14:00" from "2023-12-05T14:00:00+08:00". */
export function wallTime(iso) {
  return String(iso).slice(11, 16);
}

/** "2023-12-05" from the same. */
export function wallDate(iso) {
  return String(iso).slice(0, 10);
}

/** "14:00–14:45" */
export function wallSpan(starts, ends) {
  return `${wallTime(starts)}–${wallTime(ends)}`;
}

/** "今天" / "明天" / "12月8日 周二" for the day of `iso`, seen from the server's `now`. */
export function dayLabel(iso, now) {
  const day = wallDate(iso);
  const today = wallDate(now);
  const [y, m, d] = day.split("-").map(Number);
  const [ty, tm, td] = today.split("-").map(Number);
  const days = Math.round((Date.UTC(y, m - 1, d) - Date.UTC(ty, tm - 1, td)) / 86_400_000);
  if (days === 0) return t("room.today");
  if (days === 1) return t("room.tomorrow");
  return dateLabel(iso);
}

/** "12月8日 周二" for the day of `iso` ("2023-12-08" or a full ISO time). */
export function dateLabel(iso) {
  const [y, m, d] = wallDate(iso).split("-").map(Number);
  const weekday = t("room.weekdays").split(",")[new Date(Date.UTC(y, m - 1, d)).getUTCDay()];
  return t("room.date", { m, d, w: weekday });
}

/** The wall clock of the server's zone at `serverMs` (epoch ms), given one of its ISO strings. */
export function wallClockAt(serverMs, isoWithOffset) {
  const match = /([+-])(\d\d):(\d\d)$/.exec(String(isoWithOffset));
  const offsetMin = match ? (match[1] === "-" ? -1 : 1) * (Number(match[2]) * 60 + Number(match[3])) : 0;
  const shifted = new Date(serverMs + offsetMin * 60_000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${pad(shifted.getUTCHours())}:${pad(shifted.getUTCMinutes())}`;
}
