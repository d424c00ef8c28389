/* A hand-written AVX2 16x1 block-sparse matmul: the algorithm of gearshift's generated kernel
 * (schedules/kernels/bsr.py, along the outputs), written with intrinsics, for benchmarks/hand_bsr.py.
 * y[M, N] = x[M, K] @ W + bias; W^T stored as 16x1 blocks: data[nnz][16] (32-byte aligned),
 * indices[nnz] (block column), indptr[N/16 + 1]. Register tile: 6 rows x 2 vectors (12
 * accumulators); activation rows in chunks of `chunk_rows`; block rows split over the threads. */
#include <immintrin.h>
#include <omp.h>

#define ZERO(i) __m256 a##i##0 = _mm256_setzero_ps(), a##i##1 = _mm256_setzero_ps();
#define ROW(i)                                                                  \
    xv = _mm256_broadcast_ss(xr + (i) * K + k);                                 \
    a##i##0 = _mm256_fmadd_ps(xv, w0, a##i##0);                                 \
    a##i##1 = _mm256_fmadd_ps(xv, w1, a##i##1);
#define STORE(i)                                                                \
    _mm256_storeu_ps(y + (m + (i)) * N + br * 16, _mm256_add_ps(a##i##0, b0));  \
    _mm256_storeu_ps(y + (m + (i)) * N + br * 16 + 8, _mm256_add_ps(a##i##1, b1));

void bsr16x1(int M, int K, int N, const float *x, const float *data, const int *indices,
             const int *indptr, const float *bias, float *y, int chunk_rows, int threads) {
    int block_rows = N / 16;
#pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int first = block_rows * t / nt, last = block_rows * (t + 1) / nt;
        for (int m0 = 0; m0 < M; m0 += chunk_rows) {
            int m1 = m0 + chunk_rows < M ? m0 + chunk_rows : M;
            for (int br = first; br < last; br++) {
                int p0 = indptr[br], p1 = indptr[br + 1];
                __m256 b0 = _mm256_loadu_ps(bias + br * 16), b1 = _mm256_loadu_ps(bias + br * 16 + 8);
                int m = m0;
                for (; m + 6 <= m1; m += 6) {
                    ZERO(0) ZERO(1) ZERO(2) ZERO(3) ZERO(4) ZERO(5)
                    const float *xr = x + (long)m * K;
                    for (int p = p0; p < p1; p++) {
                        int k = indices[p];
                        __m256 w0 = _mm256_load_ps(data + p * 16), w1 = _mm256_load_ps(data + p * 16 + 8), xv;
                        ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)
                    }
                    STORE(0) STORE(1) STORE(2) STORE(3) STORE(4) STORE(5)
                }
                for (; m < m1; m++) { /* rows left over when 6 does not divide the chunk */
                    ZERO(0)
                    const float *xr = x + (long)m * K;
                    for (int p = p0; p < p1; p++) {
                        int k = indices[p];
                        __m256 w0 = _mm256_load_ps(data + p * 16), w1 = _mm256_load_ps(data + p * 16 + 8), xv;
                        ROW(0)
                    }
                    STORE(0)
                }
            }
        }
    }
}
