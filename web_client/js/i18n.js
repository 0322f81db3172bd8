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
    "error.not_allowed": "不允许这个操作：{message}",

    "home.title": "创建一节同步课",
    "home.intro": "主讲教师在城市学校上课，乡村教室通过投影实时参加。",
    "home.admin_key": "学校管理密钥",
    "home.admin_key_hint": "只需输入一次，保存在本浏览器中",
    "home.lesson_title": "课程名称",
    "home.lesson_title_ph": "例如：五年级数学 分数的加法",
    "home.classrooms": "参加的教室（每行一个名称）",
    "home.classrooms_ph": "例如：\n石桥小学 五(1)班\n河口小学 五年级",
    "home.create": "创建课程",
    "home.creating": "正在创建…",
    "home.result": "课程已创建：{title}",
    "home.teacher_link": "老师链接（主讲教师在自己的电脑上打开）",
    "home.observer_link": "观课链接（只看不说）",
    "home.classroom_codes": "各教室的代码",
    "home.col.classroom": "教室",
    "home.col.code": "课堂代码",
    "home.col.link": "直接链接",
    "home.join_hint": "在教室电脑上打开 {url}，输入 6 位代码；或直接打开该教室的链接。",
    "home.copy": "复制",
    "home.copied": "已复制",
    "home.print": "打印",
    "home.open": "打开",
    "home.new": "再建一节课",
    "home.need_key": "请输入学校管理密钥。",
    "home.need_title": "请输入课程名称。",
    "home.need_classrooms": "请至少填写一个教室名称。",
    "home.bad_key": "管理密钥不正确，请核对后重新输入。",
    "home.join_page": "教室加入页面",

    "join.title": "加入课堂",
    "join.prompt": "请输入老师给您的 6 位课堂代码",
    "join.button": "进入课堂",
    "join.joining": "正在进入…",
    "join.wrong_code": "代码不正确：没有这个课堂代码。请核对后重新输入。",
    "join.bad_format": "请输入 6 位数字。",
    "join.ended": "这节课已经结束，无法进入。",
    "join.too_many": "输错代码的次数太多，请等一分钟后再试。",

    "deck.title": "课件（提前发送）",
    "deck.none": "上课前上传 PDF 课件，各教室会提前下载",
    "deck.prev": "上一页",
    "deck.next": "下一页",
    "deck.pointer": "激光笔",
    "deck.ink": "画笔",
    "deck.clear": "清除笔迹",
    "deck.put_away": "收起课件",
    "deck.show": "展示课件",
    "deck.away": "已收起",
    "deck.upload": "上传课件",
    "deck.uploading": "正在上传并生成页面…",
    "deck.attached": "已上传《{name}》，共 {pages} 页",
    "deck.too_large": "文件太大（最大 {mb} MB），请压缩后再上传",
    "deck.ready": "课件已下载 {n}/{total}",
    "deck.ready_all": "课件就绪 {n}/{total}",
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

    "t.preview": "我的摄像头",
    "t.camera_off": "摄像头未打开",
    "t.screen": "课件（屏幕共享）",
    "t.share": "共享课件",
    "t.stop_share": "停止共享",
    "t.screen_refused": "无法共享屏幕（{reason}）。",
    "t.screen_none": "尚未共享课件",
    "t.classrooms": "教室",
    "t.col.name": "教室",
    "t.col.receives": "实际收到",
    "t.col.net": "网络",
    "t.col.action": "操作",
    "t.recv.unreported": "等待教室报告…",
    "t.recv.relay": "服务器发送：{level}",
    "t.recv.teacher_camera": "老师",
    "t.recv.slides": "课件",
    "t.recv.frozen": "画面卡住",
    "t.recv.paused": "服务器已暂停",
    "t.recv.waiting": "尚无画面",
    "t.recv.age": "{s} 秒前的报告",
    "t.recv.line": "{what}：{state}",
    "t.no_classrooms": "本课没有教室",
    "delivery.full": "完整",
    "delivery.low": "低清",
    "delivery.slides_audio": "课件+声音",
    "delivery.audio_only": "仅声音",
    "delivery.unknown": "—",
    "t.hands": "举手",
    "t.no_hands": "暂无举手",
    "t.waiting": "已等 {t}",
    "unit.s": "{n} 秒",
    "t.grant": "请发言",
    "t.dismiss": "放下",
    "t.call_on": "点名",
    "t.mosaic": "各教室画面",
    "t.mosaic_none": "教室加入后在这里显示",
    "t.stage": "发言中的教室",
    "t.stage_none": "没有教室在发言",
    "t.revoke": "结束发言",
    "t.end": "结束课程",
    "t.end_confirm": "确定结束这节课吗？所有教室都会断开。",
    "rec.recording": "录制中",
    "rec.paused": "录制已暂停",
    "rec.hint": "本节课正在录制，课后可以回放",
    "rec.pause": "暂停录制",
    "rec.resume": "继续录制",
    "rec.replay": "观看本课回放",
    "chat.title": "消息",
    "chat.placeholder": "输入消息…",
    "chat.send": "发送",
    "chat.empty": "暂无消息",
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
    "error.not_allowed": "Not allowed: {message}",

    "home.title": "Create a live lesson",
    "home.intro": "A teacher in a city school teaches; rural classrooms take part live on their projectors.",
    "home.admin_key": "School admin key",
    "home.admin_key_hint": "Asked once, kept in this browser",
    "home.lesson_title": "Lesson title",
    "home.lesson_title_ph": "e.g. Grade 5 maths: adding fractions",
    "home.classrooms": "Classrooms taking part (one name a line)",
    "home.classrooms_ph": "e.g.\nStone Bridge Primary, class 5-1\nRiver Mouth Primary, grade 5",
    "home.create": "Create lesson",
    "home.creating": "Creating…",
    "home.result": "Lesson created: {title}",
    "home.teacher_link": "Teacher link (the teacher opens it on their own computer)",
    "home.observer_link": "Observer link (watch only)",
    "home.classroom_codes": "Classroom codes",
    "home.col.classroom": "Classroom",
    "home.col.code": "Code",
    "home.col.link": "Direct link",
    "home.join_hint": "On the classroom PC open {url} and type the 6-digit code, or open that classroom's link.",
    "home.copy": "Copy",
    "home.copied": "Copied",
    "home.print": "Print",
    "home.open": "Open",
    "home.new": "Create another lesson",
    "home.need_key": "Please enter the school admin key.",
    "home.need_title": "Please enter a lesson title.",
    "home.need_classrooms": "Please name at least one classroom.",
    "home.bad_key": "The admin key is not right. Check it and enter it again.",
    "home.join_page": "Classroom join page",

    "join.title": "Join the lesson",
    "join.prompt": "Type the 6-digit code the teacher gave you",
    "join.button": "Join",
    "join.joining": "Joining…",
    "join.wrong_code": "Wrong code: no lesson has this code. Check it and type it again.",
    "join.bad_format": "Please type 6 digits.",
    "join.ended": "This lesson has already ended.",
    "join.too_many": "Too many wrong codes. Please wait a minute and try again.",

    "deck.title": "Courseware (sent before class)",
    "deck.none": "Upload a PDF before class; every classroom fetches it ahead of time",
    "deck.prev": "Previous",
    "deck.next": "Next",
    "deck.pointer": "Laser pointer",
    "deck.ink": "Pen",
    "deck.clear": "Clear ink",
    "deck.put_away": "Put the deck away",
    "deck.show": "Show the deck",
    "deck.away": "put away",
    "deck.upload": "Upload a deck",
    "deck.uploading": "Uploading and drawing the pages…",
    "deck.attached": "“{name}” attached: {pages} pages",
    "deck.too_large": "The file is too large (at most {mb} MB); make it smaller first",
    "deck.ready": "courseware {n}/{total}",
    "deck.ready_all": "courseware ready: {n}/{total}",
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

    "t.preview": "My camera",
    "t.camera_off": "Camera is off",
    "t.screen": "Slides (screen share)",
    "t.share": "Share slides",
    "t.stop_share": "Stop sharing",
    "t.screen_refused": "Cannot share the screen ({reason}).",
    "t.screen_none": "No slides shared yet",
    "t.classrooms": "Classrooms",
    "t.col.name": "Classroom",
    "t.col.receives": "Really receives",
    "t.col.net": "Network",
    "t.col.action": "Action",
    "t.recv.unreported": "Waiting for the classroom's report…",
    "t.recv.relay": "server sends: {level}",
    "t.recv.teacher_camera": "Teacher",
    "t.recv.slides": "Slides",
    "t.recv.frozen": "frozen",
    "t.recv.paused": "paused by the server",
    "t.recv.waiting": "no picture yet",
    "t.recv.age": "reported {s} s ago",
    "t.recv.line": "{what}: {state}",
    "t.no_classrooms": "No classrooms in this lesson",
    "delivery.full": "full",
    "delivery.low": "low",
    "delivery.slides_audio": "slides + audio",
    "delivery.audio_only": "audio only",
    "delivery.unknown": "—",
    "t.hands": "Raised hands",
    "t.no_hands": "No hands raised",
    "t.waiting": "waiting {t}",
    "unit.s": "{n} s",
    "t.grant": "Give the floor",
    "t.dismiss": "Dismiss",
    "t.call_on": "Call on",
    "t.mosaic": "Classrooms",
    "t.mosaic_none": "Classrooms appear here when they join",
    "t.stage": "On stage",
    "t.stage_none": "No classroom has the floor",
    "t.revoke": "End speaking",
    "t.end": "End lesson",
    "t.end_confirm": "End this lesson? Every classroom will be disconnected.",
    "rec.recording": "Recording",
    "rec.paused": "Recording paused",
    "rec.hint": "This lesson is recorded and can be replayed afterwards",
    "rec.pause": "Pause recording",
    "rec.resume": "Resume recording",
    "rec.replay": "Watch the replay",
    "chat.title": "Messages",
    "chat.placeholder": "Type a message…",
    "chat.send": "Send",
    "chat.empty": "No messages yet",
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
