/* Runs one signature of an exported tfhash SavedModel through TensorFlow's C API.
 *
 * TF_LoadSessionFromSavedModel is the loader TensorFlow Serving is built on, so a
 * model that loads and runs here loads and runs in tensorflow_model_server. The
 * test suite (tests/test_export_c_api.py) compiles this file against the
 * libtensorflow shipped inside the tensorflow wheel, using the wheel's own C
 * headers (tensorflow/include/tensorflow/c/c_api.h).
 *
 * Usage:
 *   c_api_predict EXPORT_DIR INPUT_TENSOR INPUT OUTPUT_TENSOR=FILE [...]
 *
 *   INPUT_TENSOR  the signature input's tensor name, e.g. serving_default_images:0
 *                 (see `saved_model_cli show --all`).
 *   INPUT         float32:B,H,W,C:FILE   raw little-endian float32 pixels, or
 *                 bytes:FILE[,FILE...]   encoded image files, one string each.
 *   OUTPUT_TENSOR=FILE  for each requested output: its raw bytes go to FILE and
 *                 one line "OUTPUT_TENSOR dtype=<TF_DataType> shape=d0,d1" to stdout.
 *
 * Exit status 0 on success, 1 with TensorFlow's message on stderr otherwise.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensorflow/c/c_api.h"
#include "tensorflow/c/tf_tstring.h"

#define MAX_DIMS 8
#define MAX_OUTPUTS 16
#define MAX_FILES 256

static void die(const char *what, const char *detail) {
  fprintf(stderr, "error: %s: %s\n", what, detail);
  exit(1);
}

static void check(TF_Status *status, const char *what) {
  if (TF_GetCode(status) != TF_OK) die(what, TF_Message(status));
}

/* Reads a whole file into a malloc'ed buffer; *size gets its length. */
static char *read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) die("cannot open", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *data = malloc(n > 0 ? (size_t)n : 1);
  if (data == NULL || fread(data, 1, (size_t)n, f) != (size_t)n) die("cannot read", path);
  fclose(f);
  *size = (size_t)n;
  return data;
}

/* Splits a TENSOR:INDEX name ("StatefulPartitionedCall:1") into an operation output. */
static TF_Output graph_output(TF_Graph *graph, const char *tensor_name) {
  char op_name[512];
  const char *colon = strrchr(tensor_name, ':');
  size_t len = colon ? (size_t)(colon - tensor_name) : strlen(tensor_name);
  if (len >= sizeof(op_name)) die("tensor name too long", tensor_name);
  memcpy(op_name, tensor_name, len);
  op_name[len] = '\0';
  TF_Operation *op = TF_GraphOperationByName(graph, op_name);
  if (op == NULL) die("no such operation in the graph", op_name);
  TF_Output out = {op, colon ? atoi(colon + 1) : 0};
  return out;
}

/* float32:B,H,W,C:FILE -> a float tensor holding the file's pixels. */
static TF_Tensor *float_tensor(char *spec) {
  char *dims_text = spec + strlen("float32:");
  char *path = strchr(dims_text, ':');
  if (path == NULL) die("expected float32:B,H,W,C:FILE", spec);
  *path++ = '\0';
  int64_t dims[MAX_DIMS];
  int num_dims = 0;
  size_t count = 1;
  for (char *tok = strtok(dims_text, ","); tok != NULL; tok = strtok(NULL, ",")) {
    if (num_dims == MAX_DIMS) die("too many dimensions", spec);
    dims[num_dims] = atoll(tok);
    count *= (size_t)dims[num_dims++];
  }
  size_t size;
  char *data = read_file(path, &size);
  if (size != count * sizeof(float)) die("file size does not match the shape", path);
  TF_Tensor *t = TF_AllocateTensor(TF_FLOAT, dims, num_dims, size);
  memcpy(TF_TensorData(t), data, size);
  free(data);
  return t;
}

/* bytes:FILE,FILE -> a string vector holding one encoded image per file. The strings
 * are views of `buffers`, which the caller frees after the tensor is deleted. */
static TF_Tensor *bytes_tensor(char *spec, char **buffers, int *num_buffers) {
  char *paths = spec + strlen("bytes:");
  int64_t n = 0;
  size_t sizes[MAX_FILES];
  for (char *tok = strtok(paths, ","); tok != NULL; tok = strtok(NULL, ",")) {
    if (n == MAX_FILES) die("too many files", spec);
    buffers[n] = read_file(tok, &sizes[n]);
    n++;
  }
  TF_Tensor *t = TF_AllocateTensor(TF_STRING, &n, 1, (size_t)n * sizeof(TF_TString));
  TF_TString *strings = (TF_TString *)TF_TensorData(t);
  for (int64_t i = 0; i < n; ++i) {
    TF_StringInit(&strings[i]);
    TF_StringAssignView(&strings[i], buffers[i], sizes[i]);
  }
  *num_buffers = (int)n;
  return t;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr,
            "usage: %s EXPORT_DIR INPUT_TENSOR (float32:B,H,W,C:FILE | bytes:FILE,...) "
            "OUTPUT_TENSOR=FILE...\n",
            argv[0]);
    return 1;
  }
  const char *export_dir = argv[1];
  int num_outputs = argc - 4;
  if (num_outputs > MAX_OUTPUTS) die("too many outputs", argv[4 + MAX_OUTPUTS]);

  TF_Status *status = TF_NewStatus();
  TF_Graph *graph = TF_NewGraph();
  TF_SessionOptions *options = TF_NewSessionOptions();
  const char *tags[] = {"serve"};
  TF_Session *session = TF_LoadSessionFromSavedModel(options, NULL, export_dir, tags, 1,
                                                     graph, NULL, status);
  check(status, "TF_LoadSessionFromSavedModel");

  char *buffers[MAX_FILES];
  int num_buffers = 0;
  TF_Tensor *input;
  if (strncmp(argv[3], "float32:", 8) == 0) {
    input = float_tensor(argv[3]);
  } else if (strncmp(argv[3], "bytes:", 6) == 0) {
    input = bytes_tensor(argv[3], buffers, &num_buffers);
  } else {
    die("INPUT must start with float32: or bytes:", argv[3]);
  }
  TF_Output input_op = graph_output(graph, argv[2]);

  TF_Output output_ops[MAX_OUTPUTS];
  const char *output_files[MAX_OUTPUTS];
  for (int i = 0; i < num_outputs; ++i) {
    char *eq = strchr(argv[4 + i], '=');
    if (eq == NULL) die("expected OUTPUT_TENSOR=FILE", argv[4 + i]);
    *eq = '\0';
    output_ops[i] = graph_output(graph, argv[4 + i]);
    output_files[i] = eq + 1;
  }

  TF_Tensor *outputs[MAX_OUTPUTS] = {NULL};
  TF_SessionRun(session, NULL, &input_op, &input, 1, output_ops, outputs, num_outputs,
                NULL, 0, NULL, status);
  check(status, "TF_SessionRun");

  for (int i = 0; i < num_outputs; ++i) {
    FILE *f = fopen(output_files[i], "wb");
    if (f == NULL) die("cannot write", output_files[i]);
    fwrite(TF_TensorData(outputs[i]), 1, TF_TensorByteSize(outputs[i]), f);
    fclose(f);
    printf("%s dtype=%d shape=", argv[4 + i], (int)TF_TensorType(outputs[i]));
    for (int d = 0; d < TF_NumDims(outputs[i]); ++d) {
      printf(d ? ",%lld" : "%lld", (long long)TF_Dim(outputs[i], d));
    }
    printf("\n");
    TF_DeleteTensor(outputs[i]);
  }

  TF_DeleteTensor(input);
  for (int i = 0; i < num_buffers; ++i) free(buffers[i]);
  TF_CloseSession(session, status);
  check(status, "TF_CloseSession");
  TF_DeleteSession(session, status);
  TF_DeleteSessionOptions(options);
  TF_DeleteGraph(graph);
  TF_DeleteStatus(status);
  return 0;
}
