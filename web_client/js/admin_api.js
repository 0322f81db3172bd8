// The admin pages' calls (docs/protocol.md, "The school admin's session"): the browser
// sends the HttpOnly session cookie by itself, or a token when one is given (the
// teacher's link on the attendance page).

import { request } from "./api.js";

/** The admin pages' name for the one API call (`request` of api.js). */
export const call = request;

/** Save a blob as a file the browser downloads. */
export function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
