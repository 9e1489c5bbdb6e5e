package dev.exeunt.cli;

import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.data.Prepare;
import dev.exeunt.model.generate.GenerationConfig;
import dev.exeunt.model.generate.Generator;
import dev.exeunt.model.tokenizer.BpeTokenizer;
import dev.exeunt.model.tokenizer.HfTokenizerJson;
import dev.exeunt.tensor.Device;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/**
 * The front door: prepares a corpus every JDK ships (its own source archive, lib/src.zip), trains a
 * small GPT-2 style model with two early exits, evaluates each exit, then generates with and without
 * early exit and prints the speedup.
 */
final class DemoCommand implements Main.Command {
    public String summary() {
        return "train a small early-exit model on the JDK's own sources, then generate with early exit and print the speedup";
    }

    public String usage() {
        return """
                usage: exeunt demo [--out DIR (demo-out)] [--data PATH (default $JAVA_HOME/lib/src.zip)] [--limit-mb N (8)]
                                   [--iters N (300)] [--threshold X (0.8)] [--prompt TEXT] [--json]
                  plus any model/exit/training option of 'exeunt train' (defaults here: 4 layers, d-model 256,
                  exits at layers 1 and 2, seq-len 128, batch 8). The checkpoint is left in DIR.""";
    }

    public int run(String[] argv, PrintStream out) throws Exception {
        var a = new Args(argv, Set.of("json", "untied", "shared-exit-heads", "dynamic-token-weights"));
        boolean json = a.getBool("json", false);
        PrintStream log = json ? nullStream() : out;
        Path outDir = Path.of(a.get("out", "demo-out"));
        Path corpus = a.has("data") ? Path.of(a.get("data", null)) : Path.of(System.getProperty("java.home"), "lib", "src.zip");
        if (!Files.exists(corpus)) {
            throw new IOException("no corpus at " + corpus + " (this JDK ships without lib/src.zip); give --data DIR|FILE with some text");
        }
        long limit = (long) (a.getDouble("limit-mb", 8) * 1_000_000);
        double threshold = a.getDouble("threshold", 0.8);
        String prompt = a.get("prompt", "public static void main(String[] args) {\n        ");
        String[] defaults = {"iters", "300", "exits", "1,2", "seq-len", "128", "batch", "8", "lr", "2e-3", "eval-batches", "16"};
        var merged = new java.util.ArrayList<>(Arrays.asList(argv));
        for (int i = 0; i < defaults.length; i += 2) {
            if (!a.has(defaults[i])) {
                merged.add("--" + defaults[i]);
                merged.add(defaults[i + 1]);
            }
        }
        var ta = new Args(merged.toArray(String[]::new), Set.of("json", "untied", "shared-exit-heads", "dynamic-token-weights"));
        var tc = ModelOptions.train(ta);
        Path work = Files.createTempDirectory("exeunt-demo-");
        try {
            // 1. Data: a byte-level BPE trained on the corpus, and the token dataset.
            log.printf("1/4 preparing %s (first %.0f MB of text) ...%n", corpus, limit / 1e6);
            var stats = Prepare.run(Prepare.Options.builder().input(corpus).trainTokenizer(2048).sampleBytes(Math.min(limit, 4_000_000))
                    .limitBytes(limit).output(work.resolve("data.arrow")).progress(json ? null : System.err).build());
            log.println("    " + stats);
            BpeTokenizer tokenizer = (BpeTokenizer) HfTokenizerJson.load(stats.tokenizer());
            var mc = ModelOptions.model(ta, tokenizer.vocabSize(), tc.seqLen());
            ta.get("out", null);
            ta.get("data", null);
            ta.get("limit-mb", null);
            ta.get("threshold", null);
            ta.get("prompt", null);
            ta.get("json", null);
            ta.checkAllUsed();
            if (Files.exists(outDir.resolve(ModelCheckpoint.CONFIG))) ModelCheckpoint.deleteRecursively(outDir);
            // 2. Training with exits.
            log.printf("2/4 training %d iterations of %d x %d tokens ...%n", tc.iters(), tc.batchSize(), tc.seqLen());
            var result = TrainCommand.train(mc, tc, tokenizer, work.resolve("data.arrow"), outDir, json ? null : System.err);
            // 3. Validation per exit.
            log.printf("3/4 validation per exit:%n%s", result.lastEval() == null ? "(no validation split)\n" : result.lastEval().toTable());
            // 4. Generation without and with early exit.
            log.printf("4/4 generating 96 tokens, greedy, full model vs early exit at threshold %.2f ...%n", threshold);
            try (var loaded = ModelCheckpoint.load(outDir, Device.CPU)) {
                var gen = new Generator(loaded.model());
                int[] ids = tokenizer.encode(prompt);
                var full = GenerationConfig.greedy(96).withEos(tokenizer.eosId().orElse(-1));
                var early = full.withThreshold(threshold);
                // One warm-up run each (JIT), then alternate and take medians: the machine is noisy.
                gen.generate(List.of(ids), full, (s, t) -> true);
                gen.generate(List.of(ids), early, (s, t) -> true);
                double[] fullTps = new double[5], earlyTps = new double[5];
                dev.exeunt.model.generate.Generation fullOut = null, earlyOut = null;
                for (int r = 0; r < 5; r++) {
                    fullOut = gen.generate(List.of(ids), full, (s, t) -> true).get(0);
                    fullTps[r] = gen.lastStats().decodeTokensPerSecond();
                    earlyOut = gen.generate(List.of(ids), early, (s, t) -> true).get(0);
                    earlyTps[r] = gen.lastStats().decodeTokensPerSecond();
                }
                Arrays.sort(fullTps);
                Arrays.sort(earlyTps);
                double speedup = earlyTps[2] / fullTps[2];
                int layers = loaded.model().config().nLayers();
                int[] exits = earlyOut.exitLayers();
                long early1 = Arrays.stream(exits).filter(x -> x < layers).count();
                int agree = 0;
                int[] f = fullOut.tokenIds(), e = earlyOut.tokenIds();
                for (int i = 0; i < Math.min(f.length, e.length); i++) {
                    if (f[i] != e[i]) break;
                    agree++;
                }
                if (json) {
                    out.printf(Locale.ROOT, "{\"train_tokens_per_s\":%.1f,\"final_loss\":%.4f,\"eval\":%s,\"full_tokens_per_s\":%.2f,"
                                    + "\"early_exit_tokens_per_s\":%.2f,\"speedup\":%.3f,\"early_exit_share\":%.3f,\"threshold\":%.3f,"
                                    + "\"full_text\":%s,\"early_exit_text\":%s,\"exits\":%s,\"checkpoint\":%s}%n",
                            result.tokensPerSecond(), result.lastLoss(), result.lastEval() == null ? "null" : result.lastEval().toJson(),
                            fullTps[2], earlyTps[2], speedup, (double) early1 / exits.length, threshold,
                            Json.quote(tokenizer.decode(f, true)), Json.quote(tokenizer.decode(e, true)), Json.ints(exits),
                            Json.quote(outDir.toString()));
                } else {
                    out.println("--- full model ---");
                    out.println(prompt + tokenizer.decode(f, true));
                    out.println("--- early exit (token marks: [layer] where it exited early) ---");
                    var sb = new StringBuilder(prompt);
                    for (int i = 0; i < e.length; i++) {
                        String piece = tokenizer.decode(new int[] {e[i]}, true);
                        sb.append(exits[i] < layers ? "[" + exits[i] + "]" + piece : piece);
                    }
                    out.println(sb);
                    out.println("---");
                    out.printf(Locale.ROOT, "training: %.0f tokens/s; decode: full %.1f tokens/s, early exit %.1f tokens/s%n",
                            result.tokensPerSecond(), fullTps[2], earlyTps[2]);
                    out.printf(Locale.ROOT, "early exit speedup: %.2fx at threshold %.2f (%d of %d tokens exited early; first %d tokens identical to the full model)%n",
                            speedup, threshold, early1, exits.length, agree);
                    out.println("checkpoint: " + outDir + "  (try: ./exeunt generate --model " + outDir + " --prompt 'class ' --threshold 0.8 --show-exits)");
                }
            }
        } finally {
            ModelCheckpoint.deleteRecursively(work);
        }
        return 0;
    }

    private static PrintStream nullStream() {
        return new PrintStream(java.io.OutputStream.nullOutputStream());
    }
}
