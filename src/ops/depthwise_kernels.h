/* The kernels of ops/depthwise.c, included once per path with DW_NAME (the name's suffix),
 * DW_TARGET (the function attribute), DW_V (the vector type), DW_L (its floats: 8 or 16) and
 * DW_FMA (a * b + c, fused or not) defined; each inclusion undefines them.  A stencil block
 * is 64 floats of output whatever DW_L: 4 vectors of 16 (zmm) or 8 of 8 (ymm), so that an
 * AVX2 build keeps its accumulators in its 16 registers (its 16-float vectors, pairs of ymm,
 * were spilled and reassembled through the stack: a third of EfficientNet-B0's forward). */

#define DW_NV (64 / DW_L) /* vectors of a full block */

/* The vector helpers carry the path's target too: a 64-byte vector passed between functions
 * of different targets changes the ABI (Clang refuses it). */
static inline DW_TARGET DW_V DW_NAME(vload)(const float *p) {
  DW_V v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline DW_TARGET void DW_NAME(vstore)(float *p, DW_V v) { memcpy(p, &v, sizeof v); }

static inline DW_TARGET DW_V DW_NAME(vsplat)(float x) {
  DW_V v;
  for (int i = 0; i < DW_L; i++) v[i] = x;
  return v;
}

/* out[j] = init + sum_t wt[t] * src[off[t] + j] for nv * DW_L values of j, in registers. */
static inline __attribute__((always_inline)) DW_TARGET void DW_NAME(stencil_block)(
    const int nv, int ntaps, const float *wt, const int64_t *off, const float *src, float *out,
    float init) {
  DW_V acc[DW_NV];
#pragma GCC unroll 8
  for (int v = 0; v < nv; v++) acc[v] = DW_NAME(vsplat)(init);
  for (int t = 0; t < ntaps; t++) {
    const float *s = src + off[t];
    DW_V kv = DW_NAME(vsplat)(wt[t]);
#pragma GCC unroll 8
    for (int v = 0; v < nv; v++) acc[v] = DW_FMA(kv, DW_NAME(vload)(s + DW_L * v), acc[v]);
  }
#pragma GCC unroll 8
  for (int v = 0; v < nv; v++) DW_NAME(vstore)(out + DW_L * v, acc[v]);
}

/* out[j] for j < n rounded up to DW_L (at most round16(n)), as stencil_block (the taps in
 * the same order for every j). */
DW_TARGET static void DW_NAME(stencil)(int64_t n, int ntaps, const float *wt, const int64_t *off,
                                       const float *src, float *out, float init) {
  int64_t j = 0;
  for (; j + 64 <= n; j += 64)
    DW_NAME(stencil_block)(DW_NV, ntaps, wt, off, src + j, out + j, init);
  switch ((n - j + DW_L - 1) / DW_L) {
#if DW_L == 8
    case 8: DW_NAME(stencil_block)(8, ntaps, wt, off, src + j, out + j, init); break;
    case 7: DW_NAME(stencil_block)(7, ntaps, wt, off, src + j, out + j, init); break;
    case 6: DW_NAME(stencil_block)(6, ntaps, wt, off, src + j, out + j, init); break;
    case 5: DW_NAME(stencil_block)(5, ntaps, wt, off, src + j, out + j, init); break;
#endif
    case 4: DW_NAME(stencil_block)(4, ntaps, wt, off, src + j, out + j, init); break;
    case 3: DW_NAME(stencil_block)(3, ntaps, wt, off, src + j, out + j, init); break;
    case 2: DW_NAME(stencil_block)(2, ntaps, wt, off, src + j, out + j, init); break;
    case 1: DW_NAME(stencil_block)(1, ntaps, wt, off, src + j, out + j, init); break;
    default: break;
  }
}

/* dk[t] += sum over j < nr (a multiple of 16) of d[j] * in[off[t] + j]: 16 float partial
 * sums (partial i takes the j with j % 16 == i, in 16 / DW_L vectors), then added in double
 * in lane order. */
DW_TARGET static void DW_NAME(tap_dots)(int64_t nr, int ntaps, const int64_t *off,
                                        const float *in, const float *d, double *dk) {
  for (int t = 0; t < ntaps; t++) {
    DW_V acc[16 / DW_L];
    for (int v = 0; v < 16 / DW_L; v++) acc[v] = DW_NAME(vsplat)(0.f);
    const float *s = in + off[t];
    for (int64_t j = 0; j < nr; j += 16)
      for (int v = 0; v < 16 / DW_L; v++)
        acc[v] = DW_FMA(DW_NAME(vload)(d + j + DW_L * v), DW_NAME(vload)(s + j + DW_L * v), acc[v]);
    double sum = 0;
    for (int v = 0; v < 16 / DW_L; v++)
      for (int i = 0; i < DW_L; i++) sum += acc[v][i];
    dk[t] += sum;
  }
}

#undef DW_NV
#undef DW_NAME
#undef DW_TARGET
#undef DW_V
#undef DW_L
#undef DW_FMA
