// Every string a person reads goes through t(). Chinese (zh-CN) first; English one
// click away; the choice is kept in the browser (localStorage).

const STORAGE_KEY = "classroom.lang";
export const LANGS = ["zh-CN", "en"];

/** @type {Object<string, Object<string, string>>} */
const STRINGS = {
  "zh-CN": {
    "app.name": "同步课堂",
    "lang.switch": "English",
    "conn.idle": "未连接",
    "conn.connecting": "正在连接…",
    "conn.open": "已连接",
    "conn.reconnecting": "连接中断，正在重连…",
    "conn.reconnecting_in": "连接中断，{s} 秒后重连（第 {n} 次）",
    "conn.closed": "已断开",
    "media.new": "音视频准备中…",
    "media.connecting": "音视频连接中…",
    "media.connected": "音视频已连通",
    "media.disconnected": "音视频中断，正在恢复…",
    "media.failed": "音视频连接失败，正在重试…",
    "media.closed": "音视频已关闭",
    "pic.live": "{w}×{h} · {fps} 帧/秒",
    "pic.frozen": "画面卡住（{s} 秒无新画面）",
    "pic.paused": "服务器已暂停",
    "pic.reconnecting": "正在重连…",
    "pic.waiting": "等待画面…",
    "pic.summary.ok": "已连接 · 画面正常",
    "pic.summary.frozen": "已连接 · 画面卡住",
    "pic.summary.sound_only": "已连接 · 仅声音",
    "pic.summary.paused": "已连接 · 部分画面已暂停",
    "pic.summary.waiting": "已连接 · 等待画面",
    "lesson.ended": "本节课已结束",
    "lesson.ended_hint": "谢谢参与，现在可以关闭此页面。",
    "lesson.scheduled": "等待老师开课…",
    "sound.start": "点击开启声音",
    "sound.hint": "浏览器需要您点一下才能播放声音",
    "camera.refused": "无法使用摄像头或麦克风（{reason}）。请在浏览器地址栏左侧允许使用摄像头和麦克风，然后点“重试”。",
    "camera.missing": "没有找到摄像头或麦克风，请检查设备连接后点“重试”。",
    "camera.partial": "只打开了部分设备（{reason}）。",
    "camera.retry": "重试",
    "camera.insecure": "浏览器只在 https 安全连接下允许使用摄像头和麦克风。请管理员用 https 地址提供本系统（本教室仍可观看和收听）。",
    "camera.busy": "摄像头或麦克风正被其他程序占用，请关闭其他视频软件后点“重试”。",
    "browser.no_webrtc": "这个浏览器不支持实时音视频。请使用最新版的 Chrome、Edge 或 360 浏览器（极速模式）。",
    "role.teacher": "老师",
    "role.classroom": "教室",
    "role.observer": "观课",
    "state.online": "在线",
    "state.offline": "离线",
    "fullscreen": "全屏",
    "close": "关闭",
    "cancel": "取消",
    "reconnect": "立即重连",
    "error.generic": "出错了：{message}",
    "error.bad_token": "链接无效，请向老师索取新的链接或代码。",
    "error.token_expired": "链接已过期，请向老师索取新的链接或代码。",
    "error.replaced": "本课堂已在另一个窗口或另一台电脑上打开，这里已断开。",
    "error.replaced_take_over": "在这里继续",
    "error.too_slow": "网络太慢，连接已重置，正在重连…",
    "error.rate_limited": "操作太频繁，请稍等再试。",
    "error.media_unavailable": "音视频服务暂时不可用，正在重试…",
    "error.lesson_ended": "这节课已经结束。",
    "error.not_found": "没有找到这节课，请检查链接。",
    "error.network": "无法连接服务器，请检查网络后重试。",
    "error.no_token": "链接不完整（缺少令牌）。请使用老师发的完整链接，或输入课堂代码。",
    "error.media": "音视频连接失败：{message}",
    "load.strained": "服务器繁忙：教室画面墙已降低刷新率，课堂音视频照常。",
    "load.overloaded": "服务器负载过高：已暂停最高画质，先保证各教室的声音和画面。",
    "error.not_allowed": "不允许这个操作：{message}",

    "error.not_a_deck": "这不是 PDF、PNG 或 JPEG 文件，请另存为 PDF 后上传。",
    "error.broken_file": "文件已损坏，无法打开（{message}）",
    "error.too_many_pages": "页数太多（{message}）",
    "error.page_too_large": "页面尺寸异常，不像课件（{message}）",
    "error.needs_conversion": "服务器无法读取 PowerPoint 文件，请另存为 PDF 后上传。",
    "cls.slides_waiting": "等待老师共享课件…",
    "cls.teacher": "老师",
    "cls.teacher_waiting": "等待老师的画面…",
    "cls.stage": "{name} 发言中",
    "cls.stage_student": "{name}：{student} 发言中",
    "cls.raise": "举手",
    "cls.raise_ask": "哪位同学要发言？请输入学生姓名",
    "cls.raise_confirm": "举手",
    "cls.hand_up": "已为 {student} 举手，等待老师点名…",
    "cls.lower": "放下手",
    "cls.on_stage": "老师请你们发言了！大家都能看到、听到本教室。",
    "cls.weak.low": "网络较弱：画面清晰度已降低",
    "cls.weak.slides_audio": "网络较弱：暂停老师画面，只接收课件和声音",
    "cls.weak.audio_only": "网络很弱：只接收声音",
    "cls.self": "本教室",
    "cls.need_name": "请输入学生姓名。",

    "obs.label": "观课模式：只看不说",

    "delivery.full": "完整",
    "delivery.low": "低清",
    "delivery.slides_audio": "课件+声音",
    "delivery.audio_only": "仅声音",
    "delivery.unknown": "—",
    "unit.s": "{n} 秒",
    "rec.recording": "录制中",
    "rec.paused": "录制已暂停",
    "rec.hint": "本节课正在录制，课后可以回放",
    "rec.pause": "暂停录制",
    "rec.resume": "继续录制",
    "rec.replay": "观看本课回放",
  },
  en: {
    "app.name": "Live Classroom",
    "lang.switch": "中文",
    "conn.idle": "Not connected",
    "conn.connecting": "Connecting…",
    "conn.open": "Connected",
    "conn.reconnecting": "Connection lost, reconnecting…",
    "conn.reconnecting_in": "Connection lost, retrying in {s} s (attempt {n})",
    "conn.closed": "Disconnected",
    "media.new": "Preparing audio and video…",
    "media.connecting": "Connecting audio and video…",
    "media.connected": "Audio and video connected",
    "media.disconnected": "Audio and video interrupted, recovering…",
    "media.failed": "Audio and video failed, retrying…",
    "media.closed": "Audio and video closed",
    "pic.live": "{w}×{h} · {fps} fps",
    "pic.frozen": "Frozen (no new picture for {s} s)",
    "pic.paused": "Paused by the server",
    "pic.reconnecting": "Reconnecting…",
    "pic.waiting": "Waiting for the picture…",
    "pic.summary.ok": "Connected · pictures live",
    "pic.summary.frozen": "Connected · picture frozen",
    "pic.summary.sound_only": "Connected · sound only",
    "pic.summary.paused": "Connected · a picture is paused",
    "pic.summary.waiting": "Connected · waiting for pictures",
    "lesson.ended": "This lesson has ended",
    "lesson.ended_hint": "Thank you for taking part. You can close this page now.",
    "lesson.scheduled": "Waiting for the teacher to start…",
    "sound.start": "Click to start sound",
    "sound.hint": "The browser needs one click before it plays sound",
    "camera.refused": "Cannot use the camera or microphone ({reason}). Allow them in the browser (left of the address bar), then press “Retry”.",
    "camera.missing": "No camera or microphone found. Check that they are plugged in, then press “Retry”.",
    "camera.partial": "Only some devices could be opened ({reason}).",
    "camera.retry": "Retry",
    "camera.insecure": "Browsers allow the camera and microphone only on https pages. Ask the administrator to serve this system over https (this classroom can still watch and listen).",
    "camera.busy": "The camera or microphone is used by another program. Close other video software, then press “Retry”.",
    "browser.no_webrtc": "This browser cannot do live audio and video. Please use a recent Chrome, Edge or 360 browser (speed mode).",
    "role.teacher": "Teacher",
    "role.classroom": "Classroom",
    "role.observer": "Observer",
    "state.online": "online",
    "state.offline": "offline",
    "fullscreen": "Full screen",
    "close": "Close",
    "cancel": "Cancel",
    "reconnect": "Reconnect now",
    "error.generic": "Something went wrong: {message}",
    "error.bad_token": "This link is not valid. Ask the teacher for a new link or code.",
    "error.token_expired": "This link has expired. Ask the teacher for a new link or code.",
    "error.replaced": "This lesson was opened in another window or on another computer; this one is disconnected.",
    "error.replaced_take_over": "Continue here",
    "error.too_slow": "The network is too slow; the connection was reset and is reconnecting…",
    "error.rate_limited": "Too many actions at once; wait a moment and try again.",
    "error.media_unavailable": "The audio and video service is not available; retrying…",
    "error.lesson_ended": "This lesson has ended.",
    "error.not_found": "This lesson was not found. Check the link.",
    "error.network": "Cannot reach the server. Check the network and try again.",
    "error.no_token": "This link is incomplete (no token). Use the full link from the teacher, or type the lesson code.",
    "error.media": "Audio and video could not connect: {message}",
    "load.strained": "The server is busy: the classrooms mosaic refreshes less often; the lesson goes on as usual.",
    "load.overloaded": "The server is overloaded: the top picture quality is paused to keep every classroom's sound and picture.",
    "error.not_allowed": "Not allowed: {message}",

    "error.not_a_deck": "This is not a PDF, PNG or JPEG file; save it as PDF and upload that.",
    "error.broken_file": "The file is damaged and cannot be opened ({message})",
    "error.too_many_pages": "Too many pages ({message})",
    "error.page_too_large": "Its pages are no slides ({message})",
    "error.needs_conversion": "This server cannot read PowerPoint files; save the slides as PDF.",
    "cls.slides_waiting": "Waiting for the teacher's slides…",
    "cls.teacher": "Teacher",
    "cls.teacher_waiting": "Waiting for the teacher's picture…",
    "cls.stage": "{name} is speaking",
    "cls.stage_student": "{name}: {student} is speaking",
    "cls.raise": "Raise hand",
    "cls.raise_ask": "Which student wants to speak? Type their name",
    "cls.raise_confirm": "Raise hand",
    "cls.hand_up": "Hand raised for {student}, waiting for the teacher…",
    "cls.lower": "Lower hand",
    "cls.on_stage": "You have the floor! Everyone can see and hear this classroom.",
    "cls.weak.low": "Weak link: picture quality lowered",
    "cls.weak.slides_audio": "Weak link: teacher's camera paused, slides and sound only",
    "cls.weak.audio_only": "Very weak link: sound only",
    "cls.self": "This classroom",
    "cls.need_name": "Please type the student's name.",

    "obs.label": "Observer: watch only",

    "delivery.full": "full",
    "delivery.low": "low",
    "delivery.slides_audio": "slides + audio",
    "delivery.audio_only": "audio only",
    "delivery.unknown": "—",
    "unit.s": "{n} s",
    "rec.recording": "Recording",
    "rec.paused": "Recording paused",
    "rec.hint": "This lesson is recorded and can be replayed afterwards",
    "rec.pause": "Pause recording",
    "rec.resume": "Resume recording",
    "rec.replay": "Watch the replay",
  },
};

const listeners = new Set();
let current = readStoredLang();

function readStoredLang() {
  try {
    const stored = localStorage.getItem(STORAGE_KEY);
    if (stored && LANGS.includes(stored)) return stored;
  } catch (_) { /* storage may be disabled */ }
  return "zh-CN";
}

export function lang() {
  return current;
}

export function setLang(value) {
  if (!LANGS.includes(value)) return;
  current = value;
  try { localStorage.setItem(STORAGE_KEY, value); } catch (_) { /* not kept, still applied */ }
  document.documentElement.lang = value;
  applyTo(document);
  for (const fn of listeners) fn(value);
}

/** Call fn whenever the language changes (to re-render dynamic text). */
export function onLangChange(fn) {
  listeners.add(fn);
}

/**
 * The string for `key` in the current language, with {name} placeholders filled.
 * @param {string} key
 * @param {Object<string, any>} [params]
 */
export function t(key, params) {
  const table = STRINGS[current] || STRINGS["zh-CN"];
  let text = table[key] ?? STRINGS["zh-CN"][key] ?? key;
  if (params) {
    text = text.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
  }
  return text;
}

/**
 * Add a page's own strings (the admin pages keep theirs in admin_strings.js), so that
 * this table stays the lesson pages' and merges of both stay easy.
 * @param {Object<string, Object<string, string>>} tables  language -> key -> text
 */
export function addStrings(tables) {
  for (const [language, table] of Object.entries(tables)) {
    STRINGS[language] = Object.assign(STRINGS[language] || {}, table);
  }
}

/** The keys of a language's table (tests check that both languages have the same). */
export function keysOf(language) {
  return Object.keys(STRINGS[language] || {});
}

export function has(key) {
  return key in (STRINGS[current] || {});
}

/**
 * Fill the static text of a page: data-i18n (text), data-i18n-placeholder,
 * data-i18n-title, data-i18n-aria-label.
 * @param {ParentNode} root
 */
export function applyTo(root) {
  root.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  root.querySelectorAll("[data-i18n-placeholder]").forEach((el) => {
    el.setAttribute("placeholder", t(el.dataset.i18nPlaceholder));
  });
  root.querySelectorAll("[data-i18n-title]").forEach((el) => { el.setAttribute("title", t(el.dataset.i18nTitle)); });
  root.querySelectorAll("[data-i18n-aria-label]").forEach((el) => {
    el.setAttribute("aria-label", t(el.dataset.i18nAriaLabel));
  });
}

/** Wire the page's language button (data-testid="lang-toggle") and translate the page. */
export function initI18n() {
  document.documentElement.lang = current;
  applyTo(document);
  document.querySelectorAll("[data-testid=lang-toggle]").forEach((button) => {
    button.addEventListener("click", () => setLang(current === "zh-CN" ? "en" : "zh-CN"));
  });
}
