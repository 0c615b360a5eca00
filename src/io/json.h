/*
 * json.h - a small, strict JSON parser (RFC 8259) for model files: the
 * safetensors header, config.json, sentence_bert_config.json. Every input
 * is hostile.
 *
 * The text is parsed once into a flat array of nodes in document order
 * (jsmn's idea): a container is followed by its children, an object's
 * children alternate key, value. Nothing is copied; strings are spans of
 * the text and decoded on demand. Strict: no comments, no trailing commas,
 * no leading zeros, no control characters or invalid UTF-8 in strings, no
 * lone surrogate escapes, one value per text (whitespace around it only),
 * nesting at most JSON_MAX_DEPTH.
 */
#ifndef ATTN_IO_JSON_H
#define ATTN_IO_JSON_H

#include <stddef.h>
#include <stdint.h>

#define JSON_MAX_DEPTH 64

typedef enum json_type {
  JSON_NULL,
  JSON_FALSE,
  JSON_TRUE,
  JSON_NUMBER,
  JSON_STRING,
  JSON_ARRAY,
  JSON_OBJECT
} json_type;

typedef struct json_node {
  json_type type;
  size_t start, len; /* the text span (a string's: between its quotes)   */
  int64_t count;     /* array: elements; object: key/value pairs         */
  int64_t next;      /* index of the first node after this subtree       */
} json_node;

typedef struct json_doc {
  const char *text; /* the caller's text (not owned)                  */
  json_node *nodes; /* (n) in document order; nodes[0] is the root     */
  int64_t n;
} json_doc;

/* Parses len bytes of text. 0 on success; -1 with a one-line reason in
 * err ("offset 17: expected ':'") and doc zeroed. */
int json_parse(const char *text, size_t len, json_doc *doc, char *err,
               size_t err_size);
/* Frees the nodes; accepts a zeroed doc. */
void json_free(json_doc *doc);

/* The value of key in object node obj (the last one if the key repeats),
 * or -1. */
int64_t json_object_get(const json_doc *doc, int64_t obj, const char *key);
/* 1 when string node i decodes to exactly s. */
int json_string_eq(const json_doc *doc, int64_t i, const char *s);
/* Decodes string node i into out (cap bytes, NUL-terminated): its length,
 * or -1 when it does not fit or holds U+0000. out may be NULL (cap 0) to
 * ask for the length. */
int64_t json_string_copy(const json_doc *doc, int64_t i, char *out, size_t cap);
/* Number node i as an integer (no fraction or exponent, within int64):
 * 0, or -1. */
int json_int64(const json_doc *doc, int64_t i, int64_t *out);
/* Number node i as a double: 0, or -1. */
int json_double(const json_doc *doc, int64_t i, double *out);

#endif
