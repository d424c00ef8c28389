/* A hand-written AVX2 16x1 block-sparse matmul: the algorithm of gearshift's generated kernel
 * (schedules/kernels/bsr.py, along the outputs), written with intrinsics, for benchmarks/hand_bsr.py.
 * y[M, N] = x[M, K] @ W + bias; W^T stored as 16x1 blocks: data[nnz][16] (32-byte aligned),
 * indices[nnz] (block column), indptr[N/16 + 1]. Register tile: 6 rows x 2 vectors (12
 * accumulators); activation rows in chunks of `chunk_rows`; block rows split over the threads.
 * `bsr16x1_panels`: the panel design (bsr.py `_along_outputs_panels`): the threads split the 6-row
 * tiles; per chunk of tiles, each tile's rows are transposed into a panel P[k][8] (8x8 AVX transposes),
 * then every block row is walked with the broadcasts read from the panels. */
#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>

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

static void transpose8(__m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20); r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20); r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31); r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31); r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

#define PROW(i)                                                                 \
    xv = _mm256_broadcast_ss(xp + (i));                                         \
    a##i##0 = _mm256_fmadd_ps(xv, w0, a##i##0);                                 \
    a##i##1 = _mm256_fmadd_ps(xv, w1, a##i##1);
#define PSTORE(i) if (m + (i) < M) { STORE(i) }

/* K a multiple of 8; the workspace is allocated once per call and thread (TVM's workspace pool
 * reuses its buffers too). */
void bsr16x1_panels(int M, int K, int N, const float *x, const float *data, const int *indices,
                    const int *indptr, const float *bias, float *y, int chunk_tiles, int threads) {
    int block_rows = N / 16, tiles = (M + 5) / 6;
#pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int each = (tiles + nt - 1) / nt, first = t * each, last = first + each < tiles ? first + each : tiles;
        float *P = aligned_alloc(64, (size_t)chunk_tiles * K * 8 * sizeof(float));
        for (int c0 = first; c0 < last; c0 += chunk_tiles) {
            int c1 = c0 + chunk_tiles < last ? c0 + chunk_tiles : last;
            for (int tl = c0; tl < c1; tl++) {
                float *panel = P + (long)(tl - c0) * K * 8;
                for (int k = 0; k < K; k += 8) {
                    __m256 r[8];
                    for (int i = 0; i < 8; i++) {
                        int row = tl * 6 + i < M ? tl * 6 + i : M - 1;
                        r[i] = i < 6 ? _mm256_loadu_ps(x + (long)row * K + k) : _mm256_setzero_ps();
                    }
                    transpose8(r);
                    for (int j = 0; j < 8; j++) _mm256_store_ps(panel + (long)(k + j) * 8, r[j]);
                }
            }
            for (int br = 0; br < block_rows; br++) {
                __m256 b0 = _mm256_loadu_ps(bias + br * 16), b1 = _mm256_loadu_ps(bias + br * 16 + 8);
                for (int tl = c0; tl < c1; tl++) {
                    const float *panel = P + (long)(tl - c0) * K * 8;
                    int m = tl * 6;
                    ZERO(0) ZERO(1) ZERO(2) ZERO(3) ZERO(4) ZERO(5)
                    for (int p = indptr[br]; p < indptr[br + 1]; p++) {
                        const float *xp = panel + (long)indices[p] * 8;
                        __m256 w0 = _mm256_load_ps(data + p * 16), w1 = _mm256_load_ps(data + p * 16 + 8), xv;
                        PROW(0) PROW(1) PROW(2) PROW(3) PROW(4) PROW(5)
                    }
                    PSTORE(0) PSTORE(1) PSTORE(2) PSTORE(3) PSTORE(4) PSTORE(5)
                }
            }
        }
        free(P);
    }
}
