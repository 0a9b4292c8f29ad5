/*
 * Layer norm, forward and backward, in C: a kernel checked against tinygradlm's golden files.
 *
 * The same math as tinygradlm/ref/layernorm.py, in llm.c's style: float32 storage, one row of C
 * channels at a time, N = B*T rows. The row statistics and the dweight/dbias sums accumulate in
 * double, as tinygradlm/kernels/layernorm.py does (a float running sum over many terms is less
 * accurate than NumPy's pairwise float32 sums, and the golden tolerances are a small multiple of
 * the NumPy reference's own error).
 *
 * Build (no Makefile; add -DPLANT_BUG to drop a term of the backward and see the check fail):
 *     cc -O2 -shared -fPIC -o layernorm.so layernorm.c -lm
 * Check (examples/c_kernel/check_layernorm.py calls it through ctypes on every golden case):
 *     python check_layernorm.py GOLDEN_DIR ./layernorm.so
 */
#include <math.h>

/* out, inp: (N, C); weight, bias: (C,); mean, rstd: (N,) written for the backward */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *weight, const float *bias, int N, int C, float eps) {
    for (int i = 0; i < N; i++) {
        const float *x = inp + (long)i * C;
        double m = 0.0;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        double v = 0.0;  /* two passes: no cancellation, unlike E[x^2] - E[x]^2 */
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        v /= C;  /* biased variance: divided by C */
        double s = 1.0 / sqrt(v + (double)eps);  /* eps inside the square root */
        mean[i] = (float)m;
        rstd[i] = (float)s;
        float *o = out + (long)i * C;
        for (int c = 0; c < C; c++) {
            float xhat = (x[c] - mean[i]) * rstd[i];
            o[c] = xhat * weight[c] + bias[c];
        }
    }
}

/* dinp, dout, inp: (N, C); dweight, dbias: (C,) overwritten; mean, rstd from the forward */
void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, const float *mean,
                        const float *rstd, int N, int C) {
    /* in the forward pass this was: out = xhat * weight + bias, so now: */
    for (int c = 0; c < C; c++) {
        double dw = 0.0, db = 0.0;
        for (int i = 0; i < N; i++) {
            float xhat = (inp[(long)i * C + c] - mean[i]) * rstd[i];
            dw += (double)dout[(long)i * C + c] * xhat;
            db += dout[(long)i * C + c];
        }
        dweight[c] = (float)dw;
        dbias[c] = (float)db;
    }
    /* in the forward pass this was: xhat = (x - mean) * rstd, with mean and rstd functions of
       the row, so now: dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) */
    for (int i = 0; i < N; i++) {
        const float *x = inp + (long)i * C, *g = dout + (long)i * C;
        double sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;
        for (int c = 0; c < C; c++) {
            float xhat = (x[c] - mean[i]) * rstd[i];
            sum_dxhat += (double)g[c] * weight[c];
            sum_dxhat_xhat += (double)g[c] * weight[c] * xhat;
        }
        float mean_dxhat = (float)(sum_dxhat / C);
        float mean_dxhat_xhat = (float)(sum_dxhat_xhat / C);
#ifdef PLANT_BUG
        mean_dxhat_xhat = 0.0f; /* the planted bug: the rescaling direction is not removed */
#endif
        float *dx = dinp + (long)i * C;
        for (int c = 0; c < C; c++) {
            float xhat = (x[c] - mean[i]) * rstd[i];
            dx[c] = rstd[i] * (g[c] * weight[c] - mean_dxhat - xhat * mean_dxhat_xhat);
        }
    }
}
