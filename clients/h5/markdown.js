// A small, safe Markdown renderer for model answers.
//
// Safety by construction: the WHOLE input is HTML-escaped first (& < > " '), and only
// then are Markdown constructs turned into a fixed set of tags this file writes itself
// (p, br, strong, em, code, pre, ul, ol, li, h3-h6, blockquote, hr, a). No attribute
// ever carries input except a link's href, which must start with http:// or https://
// (anything else - javascript:, data:, vbscript:, relative - stays plain text), and a
// code block's language, restricted to [A-Za-z0-9_+#.-]. Raw HTML in an answer is
// therefore shown as text, never parsed.
//
// It is meant to be re-run on the whole answer as it streams: an unclosed code fence
// renders as a code block up to the end of the text so far.

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([A-Za-z0-9_+#.-]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const BULLET = /^(\s*)[-*+]\s+(.*)$/;
const ORDERED = /^(\s*)(\d{1,9})[.)]\s+(.*)$/;
const QUOTE = /^ {0,3}&gt;\s?(.*)$/;
const RULE = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;
const SAFE_URL = /^https?:\/\/[^\s]+$/i;

/** Inline Markdown on already-escaped text: code spans, links, bold, italic. */
function inline(escaped) {
  const slots = [];
  const keep = (html) => `\u0000${slots.push(html) - 1}\u0000`;
  let s = escaped.replace(/`([^`\n]+)`/g, (_, code) => keep(`<code>${code}</code>`));
  s = s.replace(/\[([^\]\n]+)\]\(([^()\s]+(?:\([^()\s]*\)[^()\s]*)*)\)/g, (whole, label, href) => {
    if (!SAFE_URL.test(href)) return whole; // javascript:, data:, relative... stay text
    return keep(`<a href="${href}" target="_blank" rel="noopener noreferrer">${emphasis(label)}</a>`);
  });
  s = emphasis(s);
  return s.replace(/\u0000(\d+)\u0000/g, (_, i) => slots[Number(i)]);
}

function emphasis(s) {
  return s
    .replace(/\*\*(?=\S)([^\n]*?\S)\*\*/g, '<strong>$1</strong>')
    .replace(/(^|[^\w])__(?=\S)([^\n]*?\S)__(?!\w)/g, '$1<strong>$2</strong>')
    .replace(/(^|[^*\w])\*(?=[^\s*])([^*\n]*?[^\s*])\*(?!\*)/g, '$1<em>$2</em>')
    .replace(/(^|[^\w])_(?=[^\s_])([^_\n]*?[^\s_])_(?!\w)/g, '$1<em>$2</em>');
}

function paragraph(lines) {
  return `<p>${lines.map((l) => inline(l.trim())).join('<br>')}</p>`;
}

/** Render Markdown text to an HTML string that is safe to assign to innerHTML. */
export function renderMarkdown(text) {
  const lines = escapeHtml(String(text ?? '').replace(/\u0000/g, '').replace(/\r\n?/g, '\n')).split('\n');
  const html = [];
  let para = [];
  let list = null; // {tag, items: [[line, ...]], start}
  let quote = [];

  const flushPara = () => {
    if (para.length) html.push(paragraph(para));
    para = [];
  };
  const flushList = () => {
    if (!list) return;
    const start = list.tag === 'ol' && list.start !== 1 ? ` start="${list.start}"` : '';
    const items = list.items.map((item) => `<li>${item.map((l) => inline(l.trim())).join('<br>')}</li>`);
    html.push(`<${list.tag}${start}>${items.join('')}</${list.tag}>`);
    list = null;
  };
  const flushQuote = () => {
    if (quote.length) html.push(`<blockquote>${renderMarkdownEscaped(quote)}</blockquote>`);
    quote = [];
  };
  const flushAll = () => {
    flushPara();
    flushList();
    flushQuote();
  };

  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = FENCE.exec(line);
    if (fence) {
      flushAll();
      const marker = fence[1];
      const body = [];
      let j = i + 1;
      for (; j < lines.length; j++) {
        const close = lines[j].trim();
        if (close.startsWith(marker[0].repeat(marker.length)) && /^(`+|~+)$/.test(close)) break;
        body.push(lines[j]);
      }
      const lang = fence[2] ? ` class="lang-${fence[2]}" data-lang="${fence[2]}"` : '';
      html.push(`<pre><code${lang}>${body.join('\n')}</code></pre>`);
      i = j;
      continue;
    }
    const q = QUOTE.exec(line);
    if (q) {
      flushPara();
      flushList();
      quote.push(q[1]);
      continue;
    }
    flushQuote();
    if (!line.trim()) {
      flushPara();
      // A blank line inside a list keeps the list open if the next line continues it.
      const next = lines[i + 1] ?? '';
      if (list && !(BULLET.test(next) || ORDERED.test(next) || /^\s{2,}\S/.test(next))) flushList();
      continue;
    }
    if (RULE.test(line)) {
      flushAll();
      html.push('<hr>');
      continue;
    }
    const h = HEADING.exec(line);
    if (h) {
      flushAll();
      const level = Math.min(6, h[1].length + 2);
      html.push(`<h${level}>${inline(h[2])}</h${level}>`);
      continue;
    }
    const b = BULLET.exec(line);
    const o = b ? null : ORDERED.exec(line);
    if (b || o) {
      flushPara();
      const tag = b ? 'ul' : 'ol';
      const nested = list && (b ? b[1] : o[1]).length >= 2;
      if (list && list.tag !== tag && !nested) flushList();
      if (!list) list = { tag, items: [], start: o ? Number(o[2]) : 1 };
      list.items.push([b ? b[2] : o[3]]);
      continue;
    }
    if (list && /^\s+\S/.test(line)) {
      list.items[list.items.length - 1].push(line);
      continue;
    }
    flushList();
    para.push(line);
  }
  flushAll();
  return html.join('');
}

// Quote bodies are already escaped: render them without escaping twice.
function renderMarkdownEscaped(escapedLines) {
  const unescaped = escapedLines.join('\n').replace(/&(amp|lt|gt|quot|#39);/g, (m, e) =>
    ({ amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'" })[e]);
  return renderMarkdown(unescaped);
}
