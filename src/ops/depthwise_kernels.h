/* The kernels of ops/depthwise.c, included once per path with DW_NAME (the name's suffix),
 * DW_TARGET (the function attribute) and DW_FMA (a * b + c, fused or not) defined; each
 * inclusion undefines them. */

/* The vector helpers carry the path's target too: a 64-byte vector passed between functions
 * of different targets changes the ABI (Clang refuses it). */
static inline DW_TARGET v16 DW_NAME(vload)(const float *p) {
  v16 v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline DW_TARGET void DW_NAME(vstore)(float *p, v16 v) { memcpy(p, &v, sizeof v); }

static inline DW_TARGET v16 DW_NAME(vsplat)(float x) {
  v16 v;
  for (int i = 0; i < 16; i++) v[i] = x;
  return v;
}

/* out[j] = init + sum_t wt[t] * src[off[t] + j] for nv * 16 values of j, in registers. */
static inline __attribute__((always_inline)) DW_TARGET void DW_NAME(stencil_block)(
    const int nv, int ntaps, const float *wt, const int64_t *off, const float *src, float *out,
    float init) {
  v16 acc[4];
#pragma GCC unroll 4
  for (int v = 0; v < nv; v++) acc[v] = DW_NAME(vsplat)(init);
  for (int t = 0; t < ntaps; t++) {
    const float *s = src + off[t];
    v16 kv = DW_NAME(vsplat)(wt[t]);
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) acc[v] = DW_FMA(kv, DW_NAME(vload)(s + 16 * v), acc[v]);
  }
#pragma GCC unroll 4
  for (int v = 0; v < nv; v++) DW_NAME(vstore)(out + 16 * v, acc[v]);
}

/* out[j] for j < round16(n), as stencil_block (the taps in the same order for every j). */
DW_TARGET static void DW_NAME(stencil)(int64_t n, int ntaps, const float *wt, const int64_t *off,
                                       const float *src, float *out, float init) {
  int64_t j = 0;
  for (; j + 64 <= n; j += 64) DW_NAME(stencil_block)(4, ntaps, wt, off, src + j, out + j, init);
  switch ((n - j + 15) / 16) {
    case 4: DW_NAME(stencil_block)(4, ntaps, wt, off, src + j, out + j, init); break;
    case 3: DW_NAME(stencil_block)(3, ntaps, wt, off, src + j, out + j, init); break;
    case 2: DW_NAME(stencil_block)(2, ntaps, wt, off, src + j, out + j, init); break;
    case 1: DW_NAME(stencil_block)(1, ntaps, wt, off, src + j, out + j, init); break;
    default: break;
  }
}

/* dk[t] += sum over j < nr (a multiple of 16) of d[j] * in[off[t] + j]: 16 float partial
 * sums, then added in double in lane order. */
DW_TARGET static void DW_NAME(tap_dots)(int64_t nr, int ntaps, const int64_t *off,
                                        const float *in, const float *d, double *dk) {
  for (int t = 0; t < ntaps; t++) {
    v16 acc = DW_NAME(vsplat)(0.f);
    const float *s = in + off[t];
    for (int64_t j = 0; j < nr; j += 16)
      acc = DW_FMA(DW_NAME(vload)(d + j), DW_NAME(vload)(s + j), acc);
    double sum = 0;
    for (int i = 0; i < 16; i++) sum += acc[i];
    dk[t] += sum;
  }
}

#undef DW_NAME
#undef DW_TARGET
#undef DW_FMA
