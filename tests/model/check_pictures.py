"""check_pictures.py DIR - the PNG and SVG files test_show wrote (listed in
DIR/manifest.txt): every PNG decodes (CRCs, inflate, filters) with the
size show_png says it draws, holds a heat map (many colours) and text (the
ink colour); every SVG is well-formed XML with a rect per cell and text
labels. Prints "N passed, N failed"."""
import os
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pngcheck  # noqa: E402

INK = (24, 24, 24)
passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what, file=sys.stderr)


def main(d):
    with open(os.path.join(d, "manifest.txt")) as f:
        lines = [ln.split() for ln in f if ln.strip()]
    seen = set()
    for kind, path, *rest in lines:
        if kind == "png":
            # every file is inflated and sized; the pixels (pure Python,
            # slow) of the first head and the grid of each case
            case = os.path.basename(os.path.dirname(path))
            full = (case, path.endswith("heads.png")) not in seen
            seen.add((case, path.endswith("heads.png")))
            try:
                w, h, ch, rows = pngcheck.decode(path, full)
            except ValueError as e:
                check(False, str(e))
                continue
            want = (int(rest[0]), int(rest[1]))
            check(want == (0, 0) or (w, h) == want, f"{path}: {w}x{h}, expected {want}")
            if not full:
                continue
            px = pngcheck.pixels(rows, ch)
            check(len(set(px)) >= 8, f"{path}: a heat map has many colours")
            check(INK in px, f"{path}: has text")
        elif kind == "svg":
            try:
                root = ET.parse(path).getroot()
            except ET.ParseError as e:
                check(False, f"{path}: {e}")
                continue
            ns = "{http://www.w3.org/2000/svg}"
            check(root.tag == ns + "svg", f"{path}: root is <svg>")
            rects = [r for r in root.iter(ns + "rect") if r.get("fill", "").startswith("#")]
            check(len(rects) >= int(rest[0]), f"{path}: {len(rects)} cells, expected {rest[0]}")
            texts = [t for t in root.iter(ns + "text") if (t.text or "").strip()]
            check(len(texts) >= 3, f"{path}: has labels")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
