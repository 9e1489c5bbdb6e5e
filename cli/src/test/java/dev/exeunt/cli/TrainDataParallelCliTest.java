package dev.exeunt.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code train --dp 2} (two local ranks in this JVM) writes the same train_log losses, exit losses and
 * gradient norms as {@code --dp 1}: relative 1e-5 (float sums in another order, measured ~1e-7; see
 * DataParallelTrainingTest) plus the log's 6-decimal rounding. A batch the ranks cannot split is refused.
 */
class TrainDataParallelCliTest {
    static final Pattern NUMBER = Pattern.compile("-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?");

    @Test
    void dp2WritesTheSameLossesAsOneRank(@TempDir Path tmp) throws Exception {
        String data = prepare(tmp);
        List<String> one = train(data, tmp.resolve("dp1"), "1"), two = train(data, tmp.resolve("dp2"), "2");
        assertSameLosses(one, two);
        assertTrue(Files.exists(tmp.resolve("dp2/model.safetensors")));

        var bad = CliEndToEndTest.exeunt("train", "--data", data, "--out", tmp.resolve("bad").toString(), "--batch", "4", "--dp", "3");
        assertTrue(bad.code() != 0);
        assertTrue(bad.err().contains("--batch 4 is not divisible by --dp 3"), bad.err());
    }

    /**
     * The other layouts the command offers, as local threads: tp 2 x dp 2 with sequence parallelism and the
     * distributed optimizer writes one rank's losses too; then a resume of that run at one rank continues it.
     */
    @Test
    void tensorParallelSequenceParallelAndDistributedOptimizerWriteTheSameLossesAsOneRank(@TempDir Path tmp) throws Exception {
        String data = prepare(tmp);
        List<String> one = train(data, tmp.resolve("one"), "1");
        Path out = tmp.resolve("tp2dp2");
        var r = CliEndToEndTest.exeunt(args(data, out, "--tensor-model-parallel-size", "2", "--dp", "2", "--sequence-parallel",
                "--distributed-optimizer"));
        assertEquals(0, r.code(), r.err());
        assertSameLosses(one, lossLines(out));

        var sp = CliEndToEndTest.exeunt(args(data, tmp.resolve("sp1"), "--sequence-parallel"));
        assertTrue(sp.code() != 0);
        assertTrue(sp.err().contains("--sequence-parallel needs --tp > 1"), sp.err());
    }

    /**
     * Megatron's batch options: {@code --global-batch-size 8 --micro-batch-size 2} is 4 accumulated
     * micro-batches of 2 on one rank and 2 of 2 per rank at dp 2: both train on the windows of
     * {@code --batch 2 --grad-accum 4}, and log its losses.
     */
    @Test
    void microBatchSizeSplitsTheGlobalBatchForAnyDp(@TempDir Path tmp) throws Exception {
        String data = prepare(tmp);
        List<String> accumulated = run(data, tmp.resolve("accum"), "--batch", "2", "--grad-accum", "4");
        assertSameLosses(accumulated, run(data, tmp.resolve("micro"), "--global-batch-size", "8", "--micro-batch-size", "2"));
        assertSameLosses(accumulated, run(data, tmp.resolve("micro-dp2"), "--batch", "8", "--micro-batch-size", "2", "--dp", "2"));
        var bad = CliEndToEndTest.exeunt(withBase(data, tmp.resolve("bad"), "--batch", "8", "--micro-batch-size", "3"));
        assertTrue(bad.code() != 0);
        assertTrue(bad.err().contains("--batch 8 is not divisible by --micro-batch-size 3 x 1 data-parallel ranks"), bad.err());
        var both = CliEndToEndTest.exeunt(withBase(data, tmp.resolve("both"), "--batch", "8", "--micro-batch-size", "2", "--grad-accum", "2"));
        assertTrue(both.err().contains("give --grad-accum or --micro-batch-size, not both"), both.err());
    }

    /**
     * {@code --pp 2} (two pipeline stages as local threads, 1F1B over the micro-batches) writes one rank's
     * losses and a checkpoint one rank resumes; a --pipeline-layers split that does not fit is refused.
     */
    @Test
    void pipelineStagesWriteTheSameLossesAsOneRank(@TempDir Path tmp) throws Exception {
        String data = prepare(tmp);
        List<String> one = run(data, tmp.resolve("one"), "--batch", "8", "--micro-batch-size", "2");
        assertSameLosses(one, run(data, tmp.resolve("pp2"), "--batch", "8", "--micro-batch-size", "2", "--pp", "2"));
        assertSameLosses(one, run(data, tmp.resolve("pp2dp2"), "--batch", "8", "--micro-batch-size", "2",
                "--pipeline-model-parallel-size", "2", "--dp", "2", "--pipeline-layers", "1,1"));
        assertSameLosses(one, run(data, tmp.resolve("pp2dp2zero"), "--batch", "8", "--micro-batch-size", "2", "--pp", "2", "--dp", "2",
                "--distributed-optimizer"));
        var bad = CliEndToEndTest.exeunt(withBase(data, tmp.resolve("bad"), "--pp", "2", "--pipeline-layers", "2,1"));
        assertTrue(bad.code() != 0);
        assertTrue(bad.err().contains("--pipeline-layers [2, 1] adds up to 3 layers but the model has 2"), bad.err());
    }

    /**
     * {@code --fill-bubbles} at pp 4 (exits on stages 0 and 2): the first step's losses are one rank's (fills
     * change the weights only from its update on), each line logs the fills, and misuse is refused.
     */
    @Test
    void bubbleFillsAreLoggedAndMisuseIsRefused(@TempDir Path tmp) throws Exception {
        String data = prepare(tmp);
        String[] model = {"--layers", "4", "--exits", "1,3", "--batch", "8", "--micro-batch-size", "1"};
        List<String> one = run(data, tmp.resolve("one"), model);
        List<String> fill = run(data, tmp.resolve("fill"), concat(model, "--pp", "4", "--fill-bubbles"));
        double[] a = logged(one.get(0)), b = logged(fill.get(0));
        for (int i = 0; i < a.length - 1; i++) assertEquals(a[i], b[i], 1e-5 * Math.abs(a[i]), fill.get(0)); // not the norm: fills add gradient
        for (String line : fill) assertTrue(line.contains("\"fill_micro_batches\":3,\"fill_exit_losses\":["), line);
        // Measured: no fills in the first two steps (warm-up, then timing); every stage agrees on the fitted ones after.
        List<String> fitted = run(data, tmp.resolve("fitted"), concat(model, "--pp", "4", "--fill-bubbles", "--backward-forward-ratio", "measured"));
        assertEquals(3, fitted.size());
        assertTrue(!fitted.get(0).contains("fill_micro_batches") && !fitted.get(1).contains("fill_micro_batches"), fitted.toString());
        for (String[] bad : new String[][] {{"--fill-bubbles"}, {"--pp", "2", "--fill-bubbles", "x"}, {"--pp", "2", "--backward-forward-ratio", "2"},
                {"--pp", "2", "--fill-bubbles", "--backward-forward-ratio", "-1"}, {"--trace-schedule", "t.json"}}) {
            var r = CliEndToEndTest.exeunt(withBase(data, tmp.resolve("bad"), concat(model, bad)));
            assertTrue(r.code() != 0 && r.err().contains("--"), String.join(" ", bad) + ": " + r.err());
        }
    }

    private static String[] concat(String[] a, String... b) {
        return java.util.stream.Stream.concat(java.util.Arrays.stream(a), java.util.Arrays.stream(b)).toArray(String[]::new);
    }

    private static List<String> run(String data, Path out, String... batchArgs) throws Exception {
        var r = CliEndToEndTest.exeunt(withBase(data, out, batchArgs));
        assertEquals(0, r.code(), r.err());
        return lossLines(out);
    }

    /** The tiny model of {@link #args} with other batch options. */
    private static String[] withBase(String data, Path out, String... batchArgs) {
        List<String> a = new java.util.ArrayList<>(List.of("train", "--data", data, "--out", out.toString(), "--layers", "2",
                "--d-model", "32", "--heads", "2", "--seq-len", "16", "--iters", "3", "--exits", "1", "--exit-kind", "mlp",
                "--exit-weight", "0.5", "--eval-every", "0", "--json"));
        a.addAll(List.of(batchArgs));
        return a.toArray(String[]::new);
    }

    /** A dataset of this module's sources (12 files, a 300-token tokenizer) under {@code tmp}; returns its path. */
    static String prepare(Path tmp) throws Exception {
        Path corpus = tmp.resolve("corpus");
        Files.createDirectories(corpus);
        try (Stream<Path> files = Files.walk(Path.of("src/main/java"))) {
            for (Path p : files.filter(f -> f.toString().endsWith(".java")).limit(12).toList()) {
                Files.copy(p, corpus.resolve(p.getFileName().toString() + ".txt"));
            }
        }
        String data = tmp.resolve("data/train.arrow").toString();
        CliEndToEndTest.json(CliEndToEndTest.exeunt("prepare", "--input", corpus.toString(), "--train-tokenizer", "300", "--out", data,
                "--json"));
        return data;
    }

    static List<String> train(String data, Path out, String dp) throws Exception {
        var r = CliEndToEndTest.json(CliEndToEndTest.exeunt(args(data, out, "--dp", dp)));
        assertEquals(3, r.get("iterations").asInt());
        return lossLines(out);
    }

    /** The train command line of these tests (a tiny model, 3 iterations), then {@code more}. */
    static String[] args(String data, Path out, String... more) {
        List<String> a = new java.util.ArrayList<>(List.of("train", "--data", data, "--out", out.toString(), "--layers", "2",
                "--d-model", "32", "--heads", "2", "--seq-len", "16", "--batch", "4", "--grad-accum", "2", "--iters", "3",
                "--exits", "1", "--exit-kind", "mlp", "--exit-weight", "0.5", "--eval-every", "0", "--json"));
        a.addAll(List.of(more));
        return a.toArray(String[]::new);
    }

    static List<String> lossLines(Path out) throws java.io.IOException {
        return Files.readAllLines(out.resolve("train_log.jsonl")).stream().filter(l -> l.contains("\"loss\"")).toList();
    }

    /** Asserts two runs' log lines carry the same losses and gradient norms, within the tolerance above. */
    static void assertSameLosses(List<String> one, List<String> other) {
        assertEquals(3, one.size());
        assertEquals(one.size(), other.size());
        for (int s = 0; s < one.size(); s++) {
            double[] a = logged(one.get(s)), b = logged(other.get(s));
            assertEquals(4, a.length, one.get(s)); // loss, final loss, one exit loss, grad norm
            for (int i = 0; i < a.length; i++) assertEquals(a[i], b[i], 1e-5 * Math.abs(a[i]) + 1e-6, "line " + s + ": " + other.get(s));
        }
    }

    static double[] logged(String line) {
        String losses = line.substring(line.indexOf("\"loss\""), line.indexOf(",\"exit_weights\""));
        String norm = line.substring(line.indexOf("\"grad_norm\""), line.indexOf(",\"tokens_per_s\""));
        return NUMBER.matcher(losses + " " + norm).results().mapToDouble(m -> Double.parseDouble(m.group())).toArray();
    }
}
