// The room device's strings (its page and the timetable it shows, which the teacher's
// page shows too), kept apart from i18n.js (the lesson pages').

import { addStrings } from "./i18n.js";

addStrings({
  "zh-CN": {
    "room.next": "下一节课",
    "room.none": "近两周没有安排课程",
    "room.today": "今天",
    "room.tomorrow": "明天",
    "room.date": "{m}月{d}日 {w}",
    "room.weekdays": "周日,周一,周二,周三,周四,周五,周六",
    "room.live": "上课中",
    "room.teacher_school": "{teacher} · {school}",
    "room.joining": "老师已开课，正在进入课堂…",
    "room.elsewhere": "本教室的课正在另一台电脑上进行。",
    "room.take_over": "在这里上课",
    "room.online": "已连接服务器",
    "room.offline": "连不上服务器，正在重试…",
    "room.revoked": "这个教室的设备链接已失效",
    "room.revoked_hint": "链接已被更换或停用。请向学校管理员索取本教室的新链接，并设为这台电脑浏览器的首页。",
    "room.bad_link": "这不是教室的设备链接",
    "room.bad_link_hint": "请检查链接是否完整，或向学校管理员索取本教室的链接。",
  },
  en: {
    "room.next": "Next lessons",
    "room.none": "No lessons in the next two weeks",
    "room.today": "Today",
    "room.tomorrow": "Tomorrow",
    "room.date": "{w} {d}/{m}",
    "room.weekdays": "Sun,Mon,Tue,Wed,Thu,Fri,Sat",
    "room.live": "In progress",
    "room.teacher_school": "{teacher} · {school}",
    "room.joining": "The lesson has started, joining…",
    "room.elsewhere": "This room's lesson is open on another computer.",
    "room.take_over": "Join here",
    "room.online": "Connected to the server",
    "room.offline": "Cannot reach the server, retrying…",
    "room.revoked": "This room's device link no longer works",
    "room.revoked_hint": "The link was replaced or revoked. Ask the school's admin for the room's new link and make it this computer's start page.",
    "room.bad_link": "This is not a room's device link",
    "room.bad_link_hint": "Check that the link is complete, or ask the school's admin for the room's link.",
  },
});
