/*
 * check_adam.c -- check float32 Adam records of refoptim's golden corpus in plain C99.
 *
 * A reader of the corpus needs no Python and no torch: this program parses the .npy files
 * of one or more parameter records (DIR/Adam/float32/NNN/p<i>/), recomputes every step with
 * torch 2.13's single-tensor Adam (the order of torch.optim.adam._single_tensor_adam on the
 * CPU), and reports the worst difference from the stored values in ULP of the operands'
 * scale (the largest magnitude among the value before the step, after it, and the gradient:
 * refoptim.testing.metrics.ulp_error).
 *
 * Build and run (the options are the record's group options from manifest.json):
 *
 *   cc -std=c99 -O2 -ffp-contract=off -o check_adam check_adam.c -lm
 *   ./check_adam LR BETA1 BETA2 EPS WEIGHT_DECAY AMSGRAD MAXIMIZE DECOUPLED THRESHOLD DIR...
 *   ./check_adam 0.001 0.9 0.999 1e-08 0 0 0 0 4 golden/Adam/float32/000/p2
 *
 * AMSGRAD, MAXIMIZE and DECOUPLED (decoupled_weight_decay) are 0 or 1; THRESHOLD is the
 * manifest's thresholds.one_step (ULP). lr must be a Python float (not an array option).
 * Exit status: 0 when the worst error is within THRESHOLD, 1 when not, 2 on a usage or
 * file error.
 *
 * One step of torch's Adam, for float32 tensors (Python floats meet a float32 tensor as
 * float32 values; lerp_, add(alpha=) and addcmul_ are fused multiply-adds in torch's CPU
 * kernels; addcdiv_ is not; the bias corrections are Python floats, i.e. doubles):
 *
 *   step += 1                                   (float32)
 *   if maximize: grad = -grad
 *   if weight_decay != 0:
 *       decoupled: param *= (float)(1 - lr * weight_decay)
 *       else:      grad = fma((float)weight_decay, param, grad)       grad.add(param, alpha=wd)
 *   exp_avg.lerp_(grad, 1 - beta1)                                     w = (float)(1 - beta1)
 *       |w| < 0.5: exp_avg = fma(w, grad - exp_avg, exp_avg)
 *       else:      exp_avg = fma((float)(w - 1), grad - exp_avg, grad)
 *   exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
 *       exp_avg_sq = fma((float)(1 - beta2) * grad, grad, exp_avg_sq * (float)beta2)
 *   bias_correction1 = 1 - beta1 ** step, bias_correction2 = 1 - beta2 ** step   (double)
 *   step_size = lr / bias_correction1, bias_correction2_sqrt = bias_correction2 ** 0.5
 *   amsgrad: max_exp_avg_sq = maximum(max_exp_avg_sq, exp_avg_sq), and v is it
 *   denom = sqrt(v) / (float)bias_correction2_sqrt + (float)eps
 *   param = param + ((float)(-step_size) * exp_avg) / denom            param.addcdiv_(...)
 *
 * torch computes sqrt with MKL (not always correctly rounded); this program's sqrtf is
 * IEEE's, as refoptim's is, so it usually agrees with the corpus to the bit.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char descr[8];   /* "<f4" or "|b1" */
    int ndim;
    long shape[8];
    long count;      /* elements */
    unsigned char *data;
} Npy;

static int fail(const char *what, const char *path)
{
    fprintf(stderr, "check_adam: %s: %s\n", path, what);
    return 0;
}

/* Reads a .npy file (format 1.x or 2.x, C order, little-endian '<f4' or '|b1'). */
static int npy_read(const char *path, Npy *out)
{
    FILE *f = fopen(path, "rb");
    unsigned char head[12];
    unsigned long header_len;
    size_t prefix, itemsize;
    char *header, *p;
    memset(out, 0, sizeof *out);
    if (!f) return fail(strerror(errno), path);
    if (fread(head, 1, 10, f) != 10 || memcmp(head, "\x93NUMPY", 6) != 0) {
        fclose(f);
        return fail("not a .npy file", path);
    }
    if (head[6] == 1) {
        header_len = head[8] | (unsigned long)head[9] << 8;
        prefix = 10;
    } else {
        if (fread(head + 10, 1, 2, f) != 2) { fclose(f); return fail("truncated header", path); }
        header_len = head[8] | (unsigned long)head[9] << 8 | (unsigned long)head[10] << 16 | (unsigned long)head[11] << 24;
        prefix = 12;
    }
    (void)prefix;
    header = malloc(header_len + 1);
    if (!header || fread(header, 1, header_len, f) != header_len) { fclose(f); free(header); return fail("truncated header", path); }
    header[header_len] = '\0';
    /* 'descr': '<f4' */
    p = strstr(header, "'descr':");
    if (!p || sscanf(p + 8, " '%7[^']'", out->descr) != 1) { fclose(f); free(header); return fail("no descr", path); }
    if (strstr(header, "'fortran_order': True")) { fclose(f); free(header); return fail("Fortran order", path); }
    /* 'shape': (51, 3, 4) */
    p = strstr(header, "'shape':");
    if (!p || !(p = strchr(p, '('))) { fclose(f); free(header); return fail("no shape", path); }
    p++;
    out->count = 1;
    while (*p && *p != ')') {
        char *end;
        long d = strtol(p, &end, 10);
        if (end == p) { p++; continue; }
        if (out->ndim == 8) { fclose(f); free(header); return fail("too many dimensions", path); }
        out->shape[out->ndim++] = d;
        out->count *= d;
        p = end;
    }
    free(header);
    if (strcmp(out->descr, "<f4") == 0) itemsize = 4;
    else if (strcmp(out->descr, "|b1") == 0) itemsize = 1;
    else { fclose(f); return fail("descr is neither <f4 nor |b1", path); }
    out->data = malloc(out->count * itemsize + 1);
    if (!out->data || fread(out->data, itemsize, (size_t)out->count, f) != (size_t)out->count) {
        fclose(f);
        return fail("truncated data", path);
    }
    fclose(f);
    return 1;
}

/* Element i of a '<f4' array, whatever the host's byte order. */
static float f4(const Npy *a, long i)
{
    const unsigned char *b = a->data + 4 * i;
    unsigned long u = b[0] | (unsigned long)b[1] << 8 | (unsigned long)b[2] << 16 | (unsigned long)b[3] << 24;
    float x;
    unsigned int w = (unsigned int)u;
    memcpy(&x, &w, 4);
    return x;
}

static int b1(const Npy *a, long i) { return a->data[i] != 0; }

/* |ours - stored| in ULP of the operands' scale; NaN against NaN agrees. */
static double ulp_error(float ours, float stored, float before, float grad, int use_grad)
{
    float scale = fabsf(stored);
    double diff, ulp;
    if (ours == stored || (isnan(ours) && isnan(stored))) return 0.0;
    if (!isfinite(ours) || !isfinite(stored)) return INFINITY;
    if (fabsf(before) > scale) scale = fabsf(before);
    if (use_grad && fabsf(grad) > scale) scale = fabsf(grad);
    if (fabsf(ours) > scale) scale = fabsf(ours);
    diff = fabs((double)ours - (double)stored);
    ulp = (double)nextafterf(scale, INFINITY) - (double)scale;  /* np.spacing(scale) */
    return diff / ulp;
}

typedef struct {
    double lr, beta1, beta2, eps, weight_decay, threshold;
    int amsgrad, maximize, decoupled;
} Options;

typedef struct {
    double error;
    char where[512];
    long checked;
} Worst;

static void note(Worst *w, double e, const char *dir, const char *what, long t, long i)
{
    if (e > w->error) {
        w->error = e;
        snprintf(w->where, sizeof w->where, "%s: %s, step %ld, element %ld", dir, what, t, i);
    }
}

static int load(const char *dir, const char *name, Npy *a)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return npy_read(path, a);
}

static int check_record(const char *dir, const Options *o, Worst *w)
{
    Npy param, grad, has_grad, present, step, exp_avg, exp_avg_sq, max_sq;
    long steps, n, t, i;
    const float w1 = (float)(1.0 - o->beta1);
    const float w1m = (float)((double)w1 - 1.0);
    const float beta2 = (float)o->beta2;
    const float one_minus_beta2 = (float)(1.0 - o->beta2);
    const float eps = (float)o->eps;
    const float wd = (float)o->weight_decay;
    const float decay = (float)(1.0 - o->lr * o->weight_decay);
    if (!load(dir, "param.npy", &param) || !load(dir, "grad.npy", &grad) || !load(dir, "has_grad.npy", &has_grad) ||
        !load(dir, "state_present.npy", &present) || !load(dir, "state_step.npy", &step) ||
        !load(dir, "state_exp_avg.npy", &exp_avg) || !load(dir, "state_exp_avg_sq.npy", &exp_avg_sq))
        return 0;
    if (o->amsgrad && !load(dir, "state_max_exp_avg_sq.npy", &max_sq)) return 0;
    if (strcmp(param.descr, "<f4") != 0) return fail("not a float32 record", dir);
    steps = has_grad.count;
    n = steps + 1 > 0 ? param.count / (steps + 1) : 0;
    for (t = 1; t <= steps; t++) {
        long b = (t - 1) * n, a = t * n;  /* rows before and after step t */
        int had_state = b1(&present, t - 1);
        float step_before = had_state ? f4(&step, t - 1) : 0.0f;
        float step_after = step_before;
        double bc1, bc2, step_size, bc2_sqrt;
        float neg_step_size, bc2_sqrt_f;
        if (!b1(&has_grad, t - 1)) {
            /* no gradient: nothing moves */
            for (i = 0; i < n; i++) note(w, f4(&param, a + i) == f4(&param, b + i) ? 0.0 : INFINITY, dir, "param (no grad)", t, i);
            continue;
        }
        step_after = step_before + 1.0f;
        note(w, ulp_error(step_after, f4(&step, t), step_before, 0.0f, 0), dir, "step", t, 0);
        bc1 = 1.0 - pow(o->beta1, (double)step_after);
        bc2 = 1.0 - pow(o->beta2, (double)step_after);
        step_size = o->lr / bc1;
        bc2_sqrt = pow(bc2, 0.5);  /* Python's bias_correction2 ** 0.5 */
        neg_step_size = (float)(-step_size);
        bc2_sqrt_f = (float)bc2_sqrt;
        for (i = 0; i < n; i++) {
            float p0 = f4(&param, b + i), g0 = f4(&grad, (t - 1) * n + i);
            float p = p0, g = o->maximize ? -g0 : g0;
            float m0 = had_state ? f4(&exp_avg, b + i) : 0.0f;
            float v0 = had_state ? f4(&exp_avg_sq, b + i) : 0.0f;
            float x0 = (o->amsgrad && had_state) ? f4(&max_sq, b + i) : 0.0f;
            float m, v, x = 0.0f, vhat, denom, diff;
            if (o->weight_decay != 0.0) {
                if (o->decoupled) p = p * decay;
                else g = fmaf(wd, p, g);
            }
            diff = g - m0;
            m = fabsf(w1) < 0.5f ? fmaf(w1, diff, m0) : fmaf(w1m, diff, g);
            v = fmaf(one_minus_beta2 * g, g, v0 * beta2);
            vhat = v;
            if (o->amsgrad) {
                x = (x0 > v || isnan(x0)) ? x0 : v;
                vhat = x;
            }
            denom = sqrtf(vhat) / bc2_sqrt_f + eps;
            p = p + (neg_step_size * m) / denom;
            note(w, ulp_error(p, f4(&param, a + i), p0, g0, 1), dir, "param", t, i);
            note(w, ulp_error(m, f4(&exp_avg, a + i), m0, g0, 1), dir, "exp_avg", t, i);
            note(w, ulp_error(v, f4(&exp_avg_sq, a + i), v0, g0, 1), dir, "exp_avg_sq", t, i);
            if (o->amsgrad) note(w, ulp_error(x, f4(&max_sq, a + i), x0, g0, 1), dir, "max_exp_avg_sq", t, i);
        }
        w->checked++;
    }
    return 1;
}

int main(int argc, char **argv)
{
    Options o;
    Worst w;
    int k;
    if (argc < 11) {
        fprintf(stderr,
                "usage: %s LR BETA1 BETA2 EPS WEIGHT_DECAY AMSGRAD MAXIMIZE DECOUPLED THRESHOLD DIR...\n"
                "  DIR: a float32 Adam record of the golden corpus, e.g. golden/Adam/float32/000/p2\n",
                argv[0]);
        return 2;
    }
    o.lr = strtod(argv[1], NULL);
    o.beta1 = strtod(argv[2], NULL);
    o.beta2 = strtod(argv[3], NULL);
    o.eps = strtod(argv[4], NULL);
    o.weight_decay = strtod(argv[5], NULL);
    o.amsgrad = atoi(argv[6]);
    o.maximize = atoi(argv[7]);
    o.decoupled = atoi(argv[8]);
    o.threshold = strtod(argv[9], NULL);
    memset(&w, 0, sizeof w);
    strcpy(w.where, "-");
    for (k = 10; k < argc; k++)
        if (!check_record(argv[k], &o, &w)) return 2;
    printf("checked %ld steps of %d record(s): worst error %.3g ULP (%s); threshold %g ULP: %s\n", w.checked,
           argc - 10, w.error, w.where, o.threshold, w.error <= o.threshold ? "ok" : "FAIL");
    return w.error <= o.threshold ? 0 : 1;
}
