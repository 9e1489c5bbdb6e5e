package dev.exeunt.cli;

import static dev.exeunt.cli.CliEndToEndTest.exeunt;
import static dev.exeunt.cli.CliEndToEndTest.json;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code generate --tp / --pp / --ee-method} through the CLI on a saved checkpoint: every layout prints
 * one rank's tokens and exits (local ranks, and pp 2 as two mpirun processes), and layouts or options that
 * cannot work are refused with a message that names them.
 */
class GenerateLayoutCliTest {
    @TempDir
    static Path tmp;
    static String dir;

    /** Four layers, exits at 1 and 3 (one per stage at pp 2), heads scaled so some tokens exit at 0.4 and some do not. */
    @BeforeAll
    static void save() throws Exception {
        dir = writeModel(tmp.resolve("model"));
    }

    /** The model, saved in {@code out}; returns its path. */
    static String writeModel(Path out) throws Exception {
        // the vocabulary padded to a multiple of 4, so tp 2 and 4 can split it (the padding rows are never generated)
        int vocab = (SpeculativeCliTest.TOK.vocabSize() + 3) / 4 * 4;
        var cfg = ModelConfig.gpt2(vocab, 32, 4, 4, 64, List.of(ExitConfig.post(1, ExitKind.NORM, 1.0),
                ExitConfig.post(3, ExitKind.NORM, 1.0)));
        try (var m = EarlyExitModel.create(cfg, Device.CPU, 5); var s = Scope.open(); var g = GradMode.noGrad()) {
            for (var e : m.parameters().all().entrySet()) {
                if (!e.getKey().endsWith("head.weight")) continue;
                Tensor t = e.getValue();
                float[] w = t.toFloatArray();
                for (int i = 0; i < w.length; i++) w[i] *= 30;
                t.copyFrom(Tensor.of(w, t.shape()));
            }
            ModelCheckpoint.save(m, SpeculativeCliTest.TOK, out);
        }
        return out.toString();
    }

    static List<String> args(String... layout) {
        var args = new ArrayList<>(List.of("generate", "--model", dir, "--prompt-ids", "5,6,7", "--max-new-tokens", "16", "--threshold", "0.4",
                "--json"));
        args.addAll(List.of(layout));
        return args;
    }

    static JsonNode generate(String... layout) throws Exception {
        return json(exeunt(args(layout).toArray(String[]::new)));
    }

    @Test
    void everyLayoutPrintsOneRanksTokensAndExits() throws Exception {
        var one = generate("--no-warmup");
        var exits = new java.util.HashSet<Integer>();
        one.get("exits").forEach(e -> exits.add(e.intValue()));
        assertTrue(exits.size() >= 2 && exits.contains(4), "the model should exit early for some tokens and not for others: " + one);
        for (String[] layout : new String[][] {{"--tp", "2"}, {"--pp", "2"}, {"--pp", "2", "--ee-method", "pipeline"}, {"--tp", "2", "--pp", "2"},
                {"--pp", "4", "--ee-method", "pipeline"}, {"--pipeline-model-parallel-size", "2", "--pipeline-layers", "1,3"}}) {
            var got = generate(layout);
            assertEquals(one.get("tokens"), got.get("tokens"), String.join(" ", layout));
            assertEquals(one.get("exits"), got.get("exits"), String.join(" ", layout));
            assertEquals(2, got.get("acceptance").size(), got.toString());
        }
    }

    @Test
    void layoutsAndOptionsThatCannotWorkAreRefused() {
        String[][] bad = {{"--pp", "5"}, {"--ee-method", "pipeline"}, {"--ee-method", "sideways", "--pp", "2"}, {"--tp", "3"},
                {"--dp", "2"}, {"--pp", "2", "--kv-fill", "propagate"}, {"--tp", "2", "--pipeline-layers", "2,2"}};
        String[] says = {"pp 5 exceeds n_layers 4", "needs pipeline stages", "recompute or pipeline", "cannot shard this model: n_heads 4 is not divisible by tp 3",
                "data-parallel", "kv fill propagate runs on the CPU decode path", "--pipeline-layers gives 2 stages but --pp is 1"};
        for (int i = 0; i < bad.length; i++) {
            var r = exeunt(args(bad[i]).toArray(String[]::new));
            assertNotEquals(0, r.code(), String.join(" ", bad[i]));
            assertTrue(r.err().contains(says[i]), String.join(" ", bad[i]) + ": " + r.err());
        }
    }

    /** Two pipeline stages as two processes print one rank's tokens, once. */
    @Test
    void pipelineStagesAsMpiProcessesPrintOneRanksTokens() throws Exception {
        MpiTrainJob.requireMpirun();
        var one = generate("--no-warmup");
        for (String method : List.of("recompute", "pipeline")) {
            var job = MpiTrainJob.run(Duration.ofSeconds(60), new MpiTrainJob.App(2, MpiTrainJob.exeunt(List.of(),
                    args("--pp", "2", "--ee-method", method).toArray(String[]::new))));
            assertFalse(job.timedOut(), job::toString);
            assertEquals(0, job.exitCode(), job::toString);
            List<String> lines = job.output().lines().filter(l -> l.startsWith("{\"tokens\"")).toList();
            assertEquals(1, lines.size(), job::toString);
            var got = new com.fasterxml.jackson.databind.ObjectMapper().readTree(lines.get(0));
            assertEquals(one.get("tokens"), got.get("tokens"), method + ": " + job);
            assertEquals(one.get("exits"), got.get("exits"), method + ": " + job);
        }
    }

    /** sweep over layouts: the same agreement and exit shares as one rank at every threshold (only the speeds differ). */
    @Test
    void sweepOverLayoutsAgreesWithOneRank() throws Exception {
        List<String> base = List.of("sweep", "--model", dir, "--prompt", "the quick brown fox", "--thresholds", "1,0.6,0.4", "--max-new-tokens", "12",
                "--repeats", "1", "--json");
        var one = json(exeunt(base.toArray(String[]::new)));
        for (String[] layout : new String[][] {{"--tp", "2"}, {"--pp", "2"}}) {
            var args = new ArrayList<>(base);
            args.addAll(List.of(layout));
            var got = json(exeunt(args.toArray(String[]::new)));
            assertEquals(one.size(), got.size());
            for (int i = 0; i < one.size(); i++) {
                for (String f : List.of("threshold", "agreement", "prefix_agreement", "exit_share", "acceptance")) {
                    assertEquals(one.get(i).get(f), got.get(i).get(f), String.join(" ", layout) + " " + f + ": " + got.get(i));
                }
            }
        }
    }

    /** --speculative under --tp gives the full model's tokens while the exits draft; under --pp it falls back to the pipeline method, saying so. */
    @Test
    void speculativeUnderTensorParallelismAndItsFallbackUnderPipelines() throws Exception {
        var full = generate("--no-warmup", "--threshold", "1");
        var spec = generate("--tp", "2", "--speculative");
        assertEquals(full.get("tokens"), spec.get("tokens"), spec.toString());
        long drafted = 0;
        for (var x : spec.get("acceptance")) drafted += x.get("drafted").asLong();
        assertTrue(drafted > 0, "the exits should draft: " + spec);
        var r = exeunt(args("--pp", "2", "--speculative").toArray(String[]::new));
        assertEquals(0, r.code(), r.err());
        assertTrue(r.err().contains("--speculative is not built under --pp; generating with --ee-method pipeline"), r.err());
        assertEquals(generate("--pp", "2", "--ee-method", "pipeline").get("tokens"), json(r).get("tokens"));
    }
}
