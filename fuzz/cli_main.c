/*
 * cli_main.c - the `attn` command's main (tools/attn/main.c) under another
 * name, attn_cli_main, so that the argument fuzzer (cli_fuzz.c) can call it
 * beside libFuzzer's (or replay.c's) own main.
 */
#define main attn_cli_main
#include "../tools/attn/main.c"
