/*
 * test_show.c - the renderers of `attn show` on synthetic traces (no model
 * needed): writes pages, PNGs and SVGs for three cases into DIR (argv[1])
 * and checks what C can check; tests/model/check_pictures.py (PNG decode
 * and size, SVG well-formed) and check_page.py (the page in headless
 * Chromium) read the files afterwards.
 *
 *   DIR/enc   bidirectional, 3 layers x 4 heads, a sentence with hostile
 *             tokens ("</script>", quotes, ESC, invalid UTF-8, accents)
 *   DIR/dec   causal, 2 layers x 6 query / 2 KV heads (GQA)
 *   DIR/long  causal, 300 tokens: pooled maps in blocks of 3, zoom rows
 *   DIR/cross cross-attention, 7 query x 5 key tokens with their own labels
 *   DIR/xlong cross-attention, causal (bottom-right), 150 x 290 tokens:
 *             pooled in blocks of 3, 50 x 97 blocks, zoom rows
 *
 * DIR/manifest.txt lists "png PATH WIDTH HEIGHT" (the size show_png says
 * it draws, for the heads) and "svg PATH CELLS" (cells drawn) lines.
 */
#include "show.h"
#include "synth_trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int passed, failed;

static void check(int ok, const char *what) {
  if (ok) {
    passed++;
  } else {
    failed++;
    fprintf(stderr, "FAIL: %s\n", what);
  }
}

static const char *const enc_words[] = {
    "[CLS]",      "the",           "quick", "br\xC3\xB8wn",
    "fox",        "</script><b>x", "\"q'&", "\x1b[31mred",
    "\xFF\xFEzz", "dog",           "[SEP]"};

static const char *const cross_q[] = {"four",   "thousand", "seven", "hundred",
                                      "twenty", "one",      "<eos>"};
static const char *const cross_k[] = {"4", "7", "2", "1", "</script>"};

static void one_case(const char *dir, const char *name, int64_t layers,
                     int64_t seq, int64_t seq_k, int64_t hq, int64_t hk,
                     int causal, const char *const *words,
                     const char *const *key_words, FILE *manifest) {
  char sub[512], path[600], what[256];
  snprintf(sub, sizeof sub, "%s/%s", dir, name);
  mkdir(sub, 0777);
  model_trace t;
  if (synth_trace_qk(&t, layers, seq, seq_k, hq, hk, 16, causal, 3.0f, 42,
                     words, key_words)) {
    check(0, "synthetic trace");
    return;
  }
  const int64_t layer = layers - 1, token = seq / 2;
  attnmap_view v;
  char err[256] = "";
  if (attnmap_view_build(&v, &t, layer, token, 0, NULL, err, sizeof err)) {
    fprintf(stderr, "%s\n", err);
    check(0, "view");
    model_trace_free(&t);
    return;
  }
  show_input in = {&t,    &v, "The quick <b>brown</b> fox & \"friends\"",
                   layer, 0,  token};
  snprintf(path, sizeof path, "%s/attention.html", sub);
  snprintf(what, sizeof what, "%s: page written (%s)", name, err);
  check(show_html(&in, path, err, sizeof err) == 0, what);
  for (int64_t h = 0; h < hq; h++) {
    snprintf(path, sizeof path, "%s/layer%lld_head%lld.png", sub,
             (long long)layer, (long long)h);
    check(show_png_head(&in, layer, h, path, err, sizeof err) == 0, path);
    int w = 0, hh = 0;
    show_png_head_size(&in, layer, h, &w, &hh);
    fprintf(manifest, "png %s %d %d\n", path, w, hh);
    snprintf(path, sizeof path, "%s/layer%lld_head%lld.svg", sub,
             (long long)layer, (long long)h);
    check(show_svg_head(&in, layer, h, path, err, sizeof err) == 0, path);
    fprintf(manifest, "svg %s %lld\n", path,
            (long long)(v.n_blocks * v.n_blocks_k));
  }
  snprintf(path, sizeof path, "%s/layer%lld_heads.png", sub, (long long)layer);
  check(show_png_layer(&in, layer, path, err, sizeof err) == 0, path);
  fprintf(manifest, "png %s 0 0\n", path);

  /* the terminal view: plain, then coloured */
  char *plain = show_term(&in, 0), *color = show_term(&in, 1);
  snprintf(what, sizeof what, "%s: terminal view", name);
  check(plain && color && strstr(plain, " attends to") &&
            !strchr(plain, '\x1b') && strstr(color, "\x1b[48;2;"),
        what);
  if (plain && seq <= 40) { /* every visible key is listed, none hidden */
    char tok[64];
    snprintf(tok, sizeof tok, " %s ",
             key_words ? key_words[0]
             : words   ? "the"
                       : "t0");
    check(strstr(plain, tok) != NULL, "terminal view lists the keys");
    if (causal) {
      snprintf(tok, sizeof tok, " t%lld ", (long long)(token + 1));
      check(strstr(plain, tok) == NULL, "causal: later keys left out");
    }
  }
  if (plain && seq > 40)
    check(strstr(plain, "largest of") && strstr(plain, "the other"),
          "long row: the largest weights");
  if (plain && words == enc_words) /* the ESC in a token is neutralised */
    check(strstr(plain, "?[31mred") != NULL, "control characters as '?'");
  if (plain && key_words) { /* the row is a query's, the items keys */
    check(strstr(plain, cross_q[token]) == plain + strcspn(plain, "\n") + 1,
          "cross: the row names its query token");
    check(strstr(plain, "twenty attends") || strstr(plain, "hundred attends"),
          "cross: query label");
    check(strstr(plain, " 7 ") != NULL, "cross: key labels");
  }
  if (v.seq_k != v.seq) /* the maps are seq x seq_k */
    check(v.n_blocks == (seq + v.block - 1) / v.block &&
              v.n_blocks_k == (seq_k + v.block - 1) / v.block,
          "cross: query and key blocks");
  if (plain && !strcmp(name, "enc"))
    printf("%s", plain);
  free(plain);
  free(color);
  attnmap_view_free(&v);
  model_trace_free(&t);
}

/* The page must not let a token close its <script> or break the JSON. */
static void page_escaping(const char *dir) {
  char path[600];
  snprintf(path, sizeof path, "%s/enc/attention.html", dir);
  FILE *f = fopen(path, "rb");
  if (!f) {
    check(0, "read the page");
    return;
  }
  static char buf[1 << 22];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  const char *data = strstr(buf, "id=\"attn-data\">");
  check(data != NULL, "page has its data");
  if (!data)
    return;
  const char *end = strstr(data, "</script>");
  const char *hostile = strstr(data, "\\u003c/script\\u003e\\u003cb\\u003ex");
  check(hostile != NULL && hostile < end, "'</script>' in a token escaped");
  check(strstr(data, "\\u001b[31mred") != NULL, "ESC escaped in JSON");
  check(strstr(data, "\xEF\xBF\xBD\xEF\xBF\xBDzz") != NULL,
        "invalid UTF-8 becomes U+FFFD");
  check(strstr(data, "br\xC3\xB8wn") != NULL, "UTF-8 kept");
  check(strstr(buf, "http://") == NULL ||
            strstr(buf, "http://") == strstr(buf, "http://www.w3.org"),
        "no network address but the SVG namespace");
  check(strstr(buf, "<script src") == NULL && strstr(buf, "<link") == NULL &&
            strstr(buf, "@import") == NULL && strstr(buf, "url(http") == NULL,
        "no external scripts, styles or fonts");
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: test_show DIR\n");
    return 2;
  }
  const char *dir = argv[1];
  mkdir(dir, 0777);
  char path[600];
  snprintf(path, sizeof path, "%s/manifest.txt", dir);
  FILE *manifest = fopen(path, "w");
  if (!manifest) {
    fprintf(stderr, "cannot write %s\n", path);
    return 1;
  }
  one_case(dir, "enc", 3, 11, 11, 4, 4, 0, enc_words, NULL, manifest);
  one_case(dir, "dec", 2, 9, 9, 6, 2, 1, NULL, NULL, manifest);
  one_case(dir, "long", 2, 300, 300, 4, 2, 1, NULL, NULL, manifest);
  one_case(dir, "cross", 2, 7, 5, 4, 4, 0, cross_q, cross_k, manifest);
  one_case(dir, "xlong", 1, 150, 290, 2, 1, 1, NULL, NULL, manifest);
  fclose(manifest);
  page_escaping(dir);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
