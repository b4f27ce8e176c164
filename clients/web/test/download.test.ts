// The name a download is saved under: its extension matches the type the
// server checked, whatever the uploader named the file.
import assert from "node:assert/strict";
import { test } from "node:test";

import { downloadName } from "../apps/shared/dom.js";

test("a download's extension matches its type", () => {
  const cases: [string, string, string][] = [
    ["x.html", "text/plain", "x.html.txt"],
    ["notes.txt", "text/plain;charset=utf-8", "notes.txt"],
    ["NOTES.TXT", "text/plain", "NOTES.TXT"],
    ["label.png", "image/png", "label.png"],
    ["photo.jpeg", "image/jpeg", "photo.jpeg"],
    ["photo.JPG", "image/jpeg", "photo.JPG"],
    ["photo.png", "image/jpeg", "photo.png.jpg"],
    ["anim.gif", "image/gif", "anim.gif"],
    ["pic", "image/webp", "pic.webp"],
    ["invoice.pdf", "application/pdf", "invoice.pdf"],
    ["invoice.pdf.exe", "application/pdf", "invoice.pdf.exe.pdf"],
    ["page.svg", "image/svg+xml", "page.svg.bin"],
    ["run.exe", "application/octet-stream", "run.exe.bin"],
    ["report.pdf", "", "report.pdf.bin"],
  ];
  for (const [name, type, want] of cases) {
    assert.equal(downloadName(name, type), want, `${name} as ${type}`);
  }
});

test("a download's name has no path separators or control characters", () => {
  assert.equal(downloadName("../../etc/passwd", "text/plain"), "_.._etc_passwd.txt");
  assert.equal(downloadName("..\\evil\u0000\n.txt", "text/plain"), "_evil__.txt");
  assert.equal(downloadName("", "text/plain"), "file.txt");
  assert.equal(downloadName("...", "image/png"), "file.png");
  assert.ok(downloadName("a".repeat(400) + ".html", "text/plain").endsWith(".html.txt"));
  assert.ok(downloadName("a".repeat(400), "text/plain").length <= 255);
});
