// The observer page: watch the lesson, say nothing.

import { LessonPage } from "./lesson_page.js";
import { viewerOptions, setCurrentPage } from "./viewer.js";

const options = viewerOptions();
// The page object is needed by the track callback; LessonPage calls it only after joining.
setCurrentPage(new LessonPage({ role: "observer", ...options }));
