// Small helpers shared by the client's modules.  Nothing here touches
// innerHTML: every piece of text reaches the page through textContent.

// el('div', {class: 'x', dataset: {id: '1'}}, child, 'text', ...)
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

// Length in Unicode code points, as the server counts characters.
export function codePoints(s) {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

// The protocol's name rule: 1 to 32 characters, letters, digits, '_', '-', '.'
// and inner single spaces (after trimming); and not made only of characters
// that render as nothing (U+3164 HANGUL FILLER is a letter, yet blank).
const NAME_RE = /^[\p{L}\p{Nd}_.\-]+(?: [\p{L}\p{Nd}_.\-]+)*$/u;
const INVISIBLE_RE = /^[\p{Default_Ignorable_Code_Point}\s]*$/u;
export function validName(raw) {
  const name = raw.trim();
  const n = codePoints(name);
  return n >= 1 && n <= 32 && NAME_RE.test(name) && !INVISIBLE_RE.test(name);
}

// The protocol orders names by their UTF-8 bytes, which is code point order.
// JavaScript's own < compares UTF-16 units, which puts U+10000 and above
// before U+E000..U+FFFF: compare code points instead.  O(length).
export function compareNames(a, b) {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // Only a surrogate (U+D800..U+DFFF) needs care: it stands for a code
    // point above U+FFFF, so it sorts after every other unit from U+E000 up.
    const sx = x >= 0xd800 && x <= 0xdfff;
    const sy = y >= 0xd800 && y <= 0xdfff;
    if (sx !== sy) return sx ? (y >= 0xe000 ? 1 : (x < y ? -1 : 1)) : (x >= 0xe000 ? -1 : (x < y ? -1 : 1));
    return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

// User text inside our own sentences: wrapped in FIRST STRONG ISOLATE ..
// POP DIRECTIONAL ISOLATE, so that right-to-left letters or bidi controls in
// it cannot reorder the words around it (CVE-2021-42574's trick).
export function isolate(text) {
  return `\u201c\u2068${text}\u2069\u201d`;
}

export const MAX_CONTENT = 2000;

// inserted_at carries microseconds; keep milliseconds so every engine parses it.
export function parseTime(iso) {
  if (typeof iso !== 'string') return new Date(NaN);
  // Tolerate PostgreSQL's text form too ("2026-01-02 03:04:05.123456+00").
  const trimmed = iso.trim()
    .replace(/^(\d{4}-\d{2}-\d{2}) /, '$1T')
    .replace(/(\.\d{3})\d+/, '$1')
    .replace(/([+-]\d{2})$/, '$1:00');
  return new Date(trimmed);
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
const yearFmt = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });

// "14:05" today, "Nov 23, 14:05" this year, "Nov 23, 2025, 14:05" before.
export function shortTime(date, now = new Date()) {
  if (Number.isNaN(date.getTime())) return '';
  const time = timeFmt.format(date);
  if (date.toDateString() === now.toDateString()) return time;
  if (date.getFullYear() === now.getFullYear()) return `${dayFmt.format(date)}, ${time}`;
  return `${yearFmt.format(date)}, ${time}`;
}

export function fullTime(date) {
  return Number.isNaN(date.getTime()) ? '' : fullFmt.format(date);
}

// A stable colour per name, for avatars: one of AVATAR_HUES classes (no
// style attribute, so a strict style-src CSP has nothing to refuse).
const AVATAR_HUES = 12;
export function hueOf(name) {
  let h = 2166136261;
  for (const ch of name) {
    h ^= ch.codePointAt(0);
    h = Math.imul(h, 16777619);
  }
  return Math.abs(h) % AVATAR_HUES;
}

export function initialOf(name) {
  const first = [...name.trim()][0] || '?';
  return first.toLocaleUpperCase();
}

export function avatar(name) {
  return el('span', { class: `avatar hue-${hueOf(name)}`, 'aria-hidden': 'true', text: initialOf(name) });
}
