/*
 * args.h - reading `--name value`, `--name=value` and `--flag` options, and
 * turning values into numbers. Every failure here is a usage error (exit 2).
 */
#ifndef ATTN_CLI_ARGS_H
#define ATTN_CLI_ARGS_H

#include "attn.h"

/* A cursor over argv[2..]: the options of one command. */
typedef struct args {
  int argc;
  char **argv;
  int i;           /* index of the current argument                */
  char name[64];   /* the current option, "--name"                 */
  const char *inl; /* the value given as --name=value, or NULL     */
} args;

/* A cursor before the first option of the command argv[1]. */
args args_start(int argc, char **argv);
/* Advances to the next option; returns 0 at the end. A word that is not
 * an option ("extra", "-x") is a usage error. */
int args_next(args *a);
/* 1 when the current option is name. */
int args_is(const args *a, const char *name);
/* The current option's value (the next word, or after '='). */
const char *args_value(args *a);
/* Checks that the current option, a flag, was given no value. */
void args_flag(const args *a);
/* Fails: the current option is not one of command cmd's. */
_Noreturn void args_unknown(const args *a, const char *cmd);
/* Sets *slot to value, failing if it was already set. */
void args_set_once(const char **slot, const char *value, const char *opt);

/* Integer in [lo, hi]; opt names the option in messages. */
long long args_int(const char *opt, const char *s, long long lo, long long hi);
/* A finite real number. */
double args_real(const char *opt, const char *s);
/* --threads: 0 (all CPUs) to CLI_MAX_THREADS. */
int args_threads(const char *s);
/* --isa: generic, avx2, avx512, avx512bf16, amxbf16 or auto. */
attn_isa args_isa(const char *opt, const char *s);
/* --dtype: f32, bf16 or f16. */
attn_dtype args_dtype(const char *opt, const char *s);
/* --kv-quant: q8_0 or q4_0 (GGUF's blocks of 32). */
attn_dtype args_quant(const char *opt, const char *s);
/* "f32", "bf16" or "f16". */
const char *args_dtype_name(attn_dtype d);

#endif /* ATTN_CLI_ARGS_H */
