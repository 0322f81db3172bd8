// The join page's strings, kept apart from i18n.js (the lesson pages').

import { addStrings } from "./i18n.js";

addStrings({
  "zh-CN": {
    "join.title": "加入课堂",
    "join.prompt": "请输入老师给您的 6 位课堂代码",
    "join.button": "进入课堂",
    "join.joining": "正在进入…",
    "join.wrong_code": "代码不正确：没有这个课堂代码。请核对后重新输入。",
    "join.bad_format": "请输入 6 位数字。",
    "join.ended": "这节课已经结束，无法进入。",
    "join.too_many": "输错代码的次数太多，请等一分钟后再试。",
  },
  en: {
    "join.title": "Join the lesson",
    "join.prompt": "Type the 6-digit code the teacher gave you",
    "join.button": "Join",
    "join.joining": "Joining…",
    "join.wrong_code": "Wrong code: no lesson has this code. Check it and type it again.",
    "join.bad_format": "Please type 6 digits.",
    "join.ended": "This lesson has already ended.",
    "join.too_many": "Too many wrong codes. Please wait a minute and try again.",
  },
});
