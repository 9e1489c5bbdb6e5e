package dev.exeunt.bench;

import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.optim.AdamW;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Training tokens/s of a GPT-2 style model (d_model 256, 4 layers, 4 heads, seq 256, vocab 8192,
 * batch 8) without exits and with two norm exits, measured side by side: the two models alternate
 * step by step and each reports the median step time.
 */
public final class TrainThroughput {
    public record Row(String name, double tokensPerSecond, double msPerStep) {}

    private TrainThroughput() {}

    public static List<Row> run(int steps, int dModel, int layers, int seqLen, int vocab, int batch, PrintStream log) {
        var plain = ModelConfig.gpt2(vocab, dModel, layers, 4, seqLen, List.of());
        var exits = plain.withExits(List.of(ExitConfig.post(layers / 4, ExitKind.NORM, 0.5), ExitConfig.post(layers / 2, ExitKind.NORM, 0.5)));
        var rng = new SplittableRandom(1);
        int[] ids = new int[batch * seqLen], tgt = new int[batch * seqLen];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = rng.nextInt(vocab);
            tgt[i] = rng.nextInt(vocab);
        }
        try (var a = EarlyExitModel.create(plain, Device.CPU, 1); var b = EarlyExitModel.create(exits, Device.CPU, 1);
             var oa = new AdamW(AdamW.Settings.DEFAULT); var ob = new AdamW(AdamW.Settings.DEFAULT)) {
            double[] ta = new double[steps], tb = new double[steps];
            for (int s = -2; s < steps; s++) { // two warm-up steps each
                double x = step(a, oa, ids, tgt, batch, seqLen), y = step(b, ob, ids, tgt, batch, seqLen);
                if (s >= 0) {
                    ta[s] = x;
                    tb[s] = y;
                }
                if (log != null) log.printf(Locale.ROOT, "step %d: no exits %.0f ms, two exits %.0f ms%n", s, x, y);
            }
            a.parameters().all().values().forEach(Tensor::clearGrad);
            b.parameters().all().values().forEach(Tensor::clearGrad);
            List<Row> rows = new ArrayList<>();
            long tokens = (long) batch * seqLen;
            rows.add(new Row("no exits", tokens / (median(ta) / 1e3), median(ta)));
            rows.add(new Row("two norm exits", tokens / (median(tb) / 1e3), median(tb)));
            return rows;
        }
    }

    private static double step(EarlyExitModel m, AdamW opt, int[] ids, int[] tgt, int batch, int seqLen) {
        long t0 = System.nanoTime();
        m.parameters().zeroGrads();
        try (var s = Scope.open()) {
            m.forwardBackward(Tensor.ofInts(ids, batch, seqLen), Tensor.ofInts(tgt, batch, seqLen), null, 0, 1f);
        }
        AdamW.clipGradNorm(m.parameters().trainable(), 1.0);
        opt.step(m.parameters().trainable(), 1e-4f);
        return (System.nanoTime() - t0) / 1e6;
    }

    static double median(double[] v) {
        double[] c = v.clone();
        Arrays.sort(c);
        return c[c.length / 2];
    }

    public static String table(List<Row> rows) {
        var sb = new StringBuilder(String.format(Locale.ROOT, "%-16s %12s %10s%n", "model", "tokens/s", "ms/step"));
        for (Row r : rows) sb.append(String.format(Locale.ROOT, "%-16s %12.0f %10.1f%n", r.name(), r.tokensPerSecond(), r.msPerStep()));
        sb.append(String.format(Locale.ROOT, "ratio (two exits / no exits): %.3f%n", rows.get(1).tokensPerSecond() / rows.get(0).tokensPerSecond()));
        return sb.toString();
    }

    public static String toJson(List<Row> rows) {
        var sb = new StringBuilder("[");
        for (int i = 0; i < rows.size(); i++) {
            Row r = rows.get(i);
            sb.append(i > 0 ? "," : "").append(String.format(Locale.ROOT, "{\"model\":\"%s\",\"tokens_per_s\":%.1f,\"ms_per_step\":%.2f}",
                    r.name(), r.tokensPerSecond(), r.msPerStep()));
        }
        return sb.append(']').toString();
    }

    public static void main(String[] args) {
        int steps = args.length > 0 ? Integer.parseInt(args[0]) : 5;
        System.out.print(table(run(steps, 256, 4, 256, 8192, 8, System.err)));
    }
}
