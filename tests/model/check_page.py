"""check_page.py DIR - the pages test_show wrote, in headless Chromium (the
distribution's `chromium`; exit 77, skipped, when it is absent):

- each page loads with no console message at all (the page logs nothing
  when it works; an uncaught error shows as "CONSOLE" in Chromium's log)
  and its status element says "ok" after the scripts ran (--dump-dom);
- the URL fragment selects the layer, head and theme (the matrix title and
  <html data-theme> in the DOM);
- a screenshot is not blank (many colours, luminance variance), and
  choosing another layer and head changes it.

Six Chromium runs (two take a screenshot and dump the DOM in one go;
two open cross-attention pages) start at once, each with its own
profile, so the test costs about one start. Prints "N passed, N failed"."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pngcheck  # noqa: E402

passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what, file=sys.stderr)


def browser():
    for name in (os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser",
                 "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def start(exe, tmp, i, url, extra):
    prof = os.path.join(tmp, f"profile{i}")
    args = [exe, "--headless", "--no-sandbox", "--disable-gpu",
            "--no-first-run", "--disable-extensions", "--hide-scrollbars",
            f"--user-data-dir={prof}", "--enable-logging=stderr", "--v=0",
            *extra, url]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def luminance_stats(path):
    w, h, ch, rows = pngcheck.decode(path)
    px = pngcheck.pixels(rows, ch)
    lum = [0.299 * r + 0.587 * g + 0.114 * b for r, g, b in px]
    mean = sum(lum) / len(lum)
    var = sum((x - mean) ** 2 for x in lum) / len(lum)
    return (w, h), px, var


def main(d):
    exe = browser()
    if exe is None:
        print("skipped: no chromium (apt-get install chromium)")
        return 77
    # (page, fragment, the matrix title it selects, theme, screenshot)
    runs = [
        ("enc", "layer=1&head=2&theme=dark&hover=q3", "layer 1, head 2", "dark", False),
        ("long", "layer=1&head=3&theme=light&hover=k5", "layer 1, head 3 (KV head 1)", "light", False),
        ("dec", "layer=0&head=0", "layer 0, head 0 (KV head 0)", None, True),
        ("dec", "layer=1&head=5", "layer 1, head 5 (KV head 1)", None, True),
        # cross-attention: 7 queries x 5 keys, then 150 x 290 pooled
        ("cross", "layer=1&head=3&hover=k4", "layer 1, head 3", None, False),
        ("xlong", "layer=0&head=1&hover=q40", "layer 0, head 1 (KV head 0)", None, False),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        for i, (case, frag, _, _, shot) in enumerate(runs):
            url = "file://" + os.path.abspath(os.path.join(d, case, "attention.html")) + "#" + frag
            extra = ["--dump-dom"]
            if shot:  # half scale: a 640x480 picture of a 1280x960 page
                extra += [f"--screenshot={os.path.join(tmp, f'shot{i}.png')}",
                          "--window-size=1280,960", "--force-device-scale-factor=0.5"]
            procs.append((i, start(exe, tmp, i, url, extra)))
        for i, p in procs:
            case, frag, title, theme, shot = runs[i]
            what = f"{case}#{frag}"
            try:
                out, err = p.communicate(timeout=90)
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
                check(False, f"chromium timed out on {what}")
            out = out.decode("utf-8", "replace")
            err = err.decode("utf-8", "replace")
            console = [ln for ln in err.splitlines() if ":CONSOLE" in ln]
            check(not console, f"{what}: console messages: {console[:3]}")
            st = re.search(r'id="status" data-status="(\w+)">([^<]*)', out)
            check(st is not None and st.group(1) == "ok",
                  f"{what}: status {st.group(2) if st else 'missing'}")
            mt = re.search(r'id="matrixtitle">([^<]*)<', out)
            check(mt is not None and mt.group(1).endswith(title),
                  f"{what}: fragment selects '{title}' (got {mt.group(1) if mt else None})")
            if theme:
                check(f'data-theme="{theme}"' in out, f"{what}: theme {theme}")
        shots = [(i, r[1]) for i, r in enumerate(runs) if r[4]]
        stats = []
        for i, frag in shots:
            png = os.path.join(tmp, f"shot{i}.png")
            if not os.path.exists(png):
                check(False, f"screenshot {frag} missing")
                continue
            size, px, var = luminance_stats(png)
            check(len(set(px)) >= 50 and var > 100,
                  f"screenshot {frag} not blank ({len(set(px))} colours, variance {var:.0f})")
            stats.append(px)
        if len(stats) == 2:
            a, b = stats
            diff = sum(1 for x, y in zip(a, b) if x != y) / max(1, len(a))
            check(len(a) == len(b) and diff > 0.005,
                  f"another layer and head changes the picture ({100 * diff:.2f}% of pixels)")
            print(f"screenshots differ in {100 * diff:.1f}% of pixels")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
