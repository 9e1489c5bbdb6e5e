package dev.exeunt.cli;

import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.Family;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.config.WeightSchedule;
import dev.exeunt.model.train.TrainConfig;
import java.util.ArrayList;
import java.util.List;

/** The model, exit and optimisation options shared by train and demo. */
final class ModelOptions {
    private ModelOptions() {}

    static final String HELP = """
              model:  --family gpt2|llama (gpt2)  --layers N (4)  --d-model N (256)  --heads N (4)  --kv-heads N (= heads)
                      --ffn N (4*d-model for gpt2, 8/3*d-model for llama)  --untied (own output head)  --rope-theta X
              exits:  --exits 1,2 (1-based layers, "" for none)  --exit-kind embedding|norm|mlp|layer (norm)
                      --exit-placement pre|post (post)  --exit-weight W (1.0)  --exit-weight-init W (= weight)
                      --exit-weight-warmup N (0)  --exit-weight-shape linear|cosine  --exit-temperature T (1)
                      --shared-exit-heads (tie exit heads to the embedding)  --dynamic-token-weights
                      --exit-self-distill B (0; also train each exit, through its own parameters only, on the final
                      head's top-1 token, weighted B: exits that agree with the full model; pipeline size 1)
              train:  --seq-len N (128)  --batch N (8; alias --global-batch-size)  --micro-batch-size N  --grad-accum N (1)  --iters N (200)  --lr X (3e-3)  --min-lr X
                      --warmup N (20)  --weight-decay X (0.1)  --clip X (1.0)  --seed N  --eval-every N  --eval-batches N
                      --save-every N  --log-every N (0: every step on a terminal, else a line every 5 s)  --val-fraction X (0.05)""";

    /** Every option {@link #model} reads. */
    static final String[] MODEL_KEYS = {"family", "d-model", "layers", "heads", "kv-heads", "ffn", "untied", "exit-kind",
            "exit-placement", "exit-weight", "exit-weight-init", "exit-weight-warmup", "exit-weight-shape", "shared-exit-heads",
            "exit-temperature", "exit-self-distill", "exits", "rope-theta", "dynamic-token-weights"};

    static ModelConfig model(Args a, int vocab, int seqLen) {
        Family family = Family.parse(a.get("family", "gpt2"));
        int d = a.getInt("d-model", 256), layers = a.getInt("layers", 4), heads = a.getInt("heads", 4);
        int kvHeads = a.getInt("kv-heads", heads);
        int ffn = a.getInt("ffn", family == Family.GPT2 ? 4 * d : (8 * d / 3 + 31) / 32 * 32);
        boolean tied = !a.getBool("untied", family == Family.LLAMA);
        List<ExitConfig> exits = new ArrayList<>();
        ExitKind kind = ExitKind.parse(a.get("exit-kind", "norm"));
        var placement = ExitConfig.Placement.valueOf(a.get("exit-placement", "post").toUpperCase());
        double w = a.getDouble("exit-weight", 1.0);
        var schedule = new WeightSchedule(a.getDouble("exit-weight-init", w), w, a.getInt("exit-weight-warmup", 0),
                WeightSchedule.Shape.valueOf(a.get("exit-weight-shape", "linear").toUpperCase()));
        boolean shared = a.getBool("shared-exit-heads", false);
        double temp = a.getDouble("exit-temperature", 1.0), distill = a.getDouble("exit-self-distill", 0);
        for (int layer : a.getInts("exits", new int[0])) exits.add(new ExitConfig(layer, placement, kind, shared, schedule, temp, distill));
        return new ModelConfig(family, vocab, d, layers, heads, kvHeads, ffn, seqLen, 1e-5, a.getDouble("rope-theta", 10000),
                tied, exits, a.getBool("dynamic-token-weights", false), -1, -1);
    }

    /**
     * Megatron's batch options: with {@code --micro-batch-size M}, {@code --batch} (alias
     * {@code --global-batch-size}) is the whole step's batch G, and each of the {@code dp} data-parallel
     * ranks runs G / (M dp) micro-batches of M windows: the trainer's micro-batch is then M dp windows,
     * accumulated G / (M dp) times, so any dp (and one rank) trains on the same windows per step.
     */
    static TrainConfig withMicroBatches(TrainConfig tc, int micro, int dp) {
        if (micro == 0) return tc;
        if (micro < 0) throw new Args.UsageException("--micro-batch-size must be >= 1, got " + micro);
        if (tc.gradAccum() != 1) throw new Args.UsageException("give --grad-accum or --micro-batch-size, not both");
        long perMicro = (long) micro * dp;
        if (tc.batchSize() % perMicro != 0) {
            throw new IllegalArgumentException("--batch " + tc.batchSize() + " is not divisible by --micro-batch-size " + micro + " x "
                    + dp + " data-parallel ranks");
        }
        return tc.withBatches((int) perMicro, (int) (tc.batchSize() / perMicro));
    }

    static TrainConfig train(Args a) {
        var def = TrainConfig.defaults();
        int iters = a.getInt("iters", def.iters());
        double lr = a.getDouble("lr", def.lr());
        int batch = a.getInt("batch", def.batchSize()), global = a.getInt("global-batch-size", batch);
        if (a.has("batch") && a.has("global-batch-size") && batch != global) {
            throw new Args.UsageException("--batch " + batch + " and --global-batch-size " + global + " disagree (with --micro-batch-size they are the same option)");
        }
        return new TrainConfig(a.getInt("seq-len", def.seqLen()), global, a.getInt("grad-accum", 1),
                iters, lr, a.getDouble("min-lr", lr / 10), a.getInt("warmup", Math.min(def.warmupIters(), iters / 10)),
                a.getDouble("weight-decay", def.weightDecay()), 0.9, 0.95, a.getDouble("clip", 1.0), a.getLong("seed", def.seed()),
                a.getInt("eval-every", Math.max(1, iters / 4)), a.getInt("eval-batches", 8), a.getInt("save-every", Math.max(1, iters / 4)),
                a.getInt("log-every", 0), a.getDouble("val-fraction", def.valFraction()));
    }
}
