/* Run one TVM-compiled kernel (object file exporting __tvm_ffi_kernel) on its arguments.
 *
 * Why: gearshift's ARM kernels must be checked on ARM, and this machine has none; qemu-user runs an
 * aarch64 executable, but not TVM's full runtime (which needs an aarch64 Python). A compiled PrimFunc
 * only needs what TVM's library loader gives it: three backend function pointers (parallel launch,
 * workspace alloc/free) and the error setter. This file provides them - the parallel launch runs
 * every task on its own pthread, as TVM's thread pool does - then calls the kernel through TVM's
 * packed-call ABI with DLTensor arguments, exactly as the runtime would.
 *
 * Call file (little endian): int32 nargs; per argument: int32 dtype code, int32 bits, int32 ndim,
 * int64 shape[ndim], then the payload. The result file holds every argument's payload after the
 * call, in order (outputs are arguments in TVM's destination-passing style).
 */
#include <dlpack/dlpack.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tvm/ffi/c_api.h>

typedef struct { void* sync_handle; int32_t num_task; } ParallelEnv;
typedef int (*ParallelLambda)(int task_id, ParallelEnv* env, void* cdata);

extern void* __TVMBackendParallelLaunch;
extern void* __TVMBackendAllocWorkspace;
extern void* __TVMBackendFreeWorkspace;
int __tvm_ffi_kernel(void* self, const TVMFFIAny* args, int32_t nargs, TVMFFIAny* result);

enum { DEFAULT_TASKS = 4, MAX_TASKS = 64, MAX_ARGS = 32 };

typedef struct { ParallelLambda fn; ParallelEnv* env; void* cdata; int id; int rc; } Task;

static void* run_task(void* p) {
  Task* t = p;
  t->rc = t->fn(t->id, t->env, t->cdata);
  return NULL;
}

static int parallel_launch(ParallelLambda fn, void* cdata, int num_task) {
  if (num_task <= 0) num_task = DEFAULT_TASKS;
  if (num_task > MAX_TASKS) num_task = MAX_TASKS;
  ParallelEnv env = {NULL, num_task};
  pthread_t threads[MAX_TASKS];
  Task tasks[MAX_TASKS];
  for (int i = 0; i < num_task; ++i) {
    tasks[i] = (Task){fn, &env, cdata, i, 0};
    if (pthread_create(&threads[i], NULL, run_task, &tasks[i])) return -1;
  }
  int rc = 0;
  for (int i = 0; i < num_task; ++i) {
    pthread_join(threads[i], NULL);
    rc |= tasks[i].rc;
  }
  return rc;
}

static void* alloc_workspace(int device_type, int device_id, uint64_t nbytes, int code, int bits) {
  (void)device_type, (void)device_id, (void)code, (void)bits;
  return aligned_alloc(64, (nbytes + 63) / 64 * 64);
}

static int free_workspace(int device_type, int device_id, void* ptr) {
  (void)device_type, (void)device_id;
  free(ptr);
  return 0;
}

void TVMFFIErrorSetRaisedFromCStrParts(const char* kind, const char** parts, int32_t n) {
  fprintf(stderr, "kernel raised %s:", kind ? kind : "error");
  for (int i = 0; i < n; ++i) if (parts[i]) fprintf(stderr, " %s", parts[i]);
  fprintf(stderr, "\n");
}

static void read_exact(FILE* f, void* p, size_t n) {
  if (fread(p, 1, n, f) != n) { fprintf(stderr, "harness: truncated call file\n"); exit(3); }
}

int main(int argc, char** argv) {
  if (argc != 3) { fprintf(stderr, "usage: %s CALL_FILE RESULT_FILE\n", argv[0]); return 2; }
  __TVMBackendParallelLaunch = (void*)parallel_launch;
  __TVMBackendAllocWorkspace = (void*)alloc_workspace;
  __TVMBackendFreeWorkspace = (void*)free_workspace;

  FILE* in = fopen(argv[1], "rb");
  if (!in) { perror(argv[1]); return 2; }
  int32_t nargs;
  read_exact(in, &nargs, 4);
  if (nargs < 1 || nargs > MAX_ARGS) { fprintf(stderr, "harness: bad argument count %d\n", nargs); return 3; }
  DLTensor tensors[MAX_ARGS];
  int64_t shapes[MAX_ARGS][8];
  size_t sizes[MAX_ARGS];
  TVMFFIAny args[MAX_ARGS];
  for (int i = 0; i < nargs; ++i) {
    int32_t head[3];
    read_exact(in, head, sizeof head);
    if (head[2] < 0 || head[2] > 8) { fprintf(stderr, "harness: bad ndim %d\n", head[2]); return 3; }
    read_exact(in, shapes[i], 8 * (size_t)head[2]);
    size_t count = 1;
    for (int d = 0; d < head[2]; ++d) count *= (size_t)shapes[i][d];
    sizes[i] = count * (size_t)(head[1] / 8);
    void* data = aligned_alloc(64, (sizes[i] + 63) / 64 * 64 + 64);
    read_exact(in, data, sizes[i]);
    tensors[i] = (DLTensor){data, {kDLCPU, 0}, head[2], {(uint8_t)head[0], (uint8_t)head[1], 1},
                            shapes[i], NULL, 0};
    memset(&args[i], 0, sizeof args[i]);
    args[i].type_index = kTVMFFIDLTensorPtr;
    args[i].v_ptr = &tensors[i];
  }
  fclose(in);

  TVMFFIAny result;
  memset(&result, 0, sizeof result);
  result.type_index = kTVMFFINone;
  int rc = __tvm_ffi_kernel(NULL, args, nargs, &result);
  if (rc) { fprintf(stderr, "harness: kernel returned %d\n", rc); return 1; }

  FILE* out = fopen(argv[2], "wb");
  if (!out) { perror(argv[2]); return 2; }
  for (int i = 0; i < nargs; ++i) fwrite(tensors[i].data, 1, sizes[i], out);
  return fclose(out) ? 2 : 0;
}
