package dev.exeunt.cli;

import static dev.exeunt.cli.CliEndToEndTest.exeunt;
import static dev.exeunt.cli.CliEndToEndTest.json;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.exeunt.cli.serve.TestRows;
import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.config.ExitConfig;
import dev.exeunt.model.config.ExitKind;
import dev.exeunt.model.config.ModelConfig;
import dev.exeunt.model.nn.EarlyExitModel;
import dev.exeunt.model.tokenizer.BpeTokenizer;
import dev.exeunt.model.tokenizer.BpeTrainer;
import dev.exeunt.tensor.Device;
import java.nio.file.Path;
import java.util.List;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * generate and sweep with --speculative on tiny models whose exit is sure of its token: one where the
 * exit's token is the full model's (every draft should be accepted), one where it never is (every
 * draft rejected). Either way the output is the full model's, token for token.
 */
class SpeculativeCliTest {
    static final BpeTokenizer TOK = BpeTrainer.train(List.of("the quick brown fox jumps over the lazy dog. ".repeat(20)), 300,
            List.of("<|endoftext|>"));
    /** The rows the heads favour: plain tokens, not the end of text. */
    static final int EXIT_ROW = 100, FINAL_ROW = 101;
    static final String PROMPT = "5,6,7";

    static Path model(Path dir, Consumer<EarlyExitModel> heads) throws Exception {
        var cfg = ModelConfig.gpt2(TOK.vocabSize(), 16, 2, 2, 64, List.of(ExitConfig.post(1, ExitKind.NORM, 1.0)));
        try (var m = EarlyExitModel.create(cfg, Device.CPU, 1)) {
            heads.accept(m);
            ModelCheckpoint.save(m, TOK, dir);
        }
        return dir;
    }

    static JsonNode generate(String dir, String... extra) throws Exception {
        var args = new java.util.ArrayList<>(List.of("generate", "--model", dir, "--prompt-ids", PROMPT, "--max-new-tokens", "12", "--json"));
        args.addAll(List.of(extra));
        return json(exeunt(args.toArray(String[]::new)));
    }

    static int[] ints(JsonNode a) {
        int[] out = new int[a.size()];
        for (int i = 0; i < out.length; i++) out[i] = a.get(i).intValue();
        return out;
    }

    /** One entry per exit, the model's exit layer, drafted >= accepted >= 0; returns the sums (drafted, accepted). */
    static long[] checkAcceptance(JsonNode json) {
        JsonNode acc = json.get("acceptance");
        assertEquals(1, acc.size(), json.toString());
        assertEquals(1, acc.get(0).get("layer").intValue(), json.toString());
        long drafted = acc.get(0).get("drafted").longValue(), accepted = acc.get(0).get("accepted").longValue();
        assertTrue(drafted >= accepted && accepted >= 0, json.toString());
        return new long[] {drafted, accepted};
    }

    @Test
    void draftsTheFullModelRejectsNeverReachTheOutput(@TempDir Path tmp) throws Exception {
        String dir = model(tmp, m -> TestRows.disagree(m, EXIT_ROW, FINAL_ROW)).toString();
        var full = generate(dir, "--threshold", "1");
        var thresholded = generate(dir, "--threshold", "0.5");
        // the model is what the test needs: its exit is sure, and wrong
        assertFalse(java.util.Arrays.equals(ints(full.get("tokens")), ints(thresholded.get("tokens"))), thresholded.toString());
        assertFalse(full.get("speculative").booleanValue());
        for (String draftMax : List.of("1", "3", "7")) {
            var spec = generate(dir, "--threshold", "0.5", "--speculative", "--draft-max", draftMax);
            assertTrue(spec.get("speculative").booleanValue());
            assertArrayEquals(ints(full.get("tokens")), ints(spec.get("tokens")), "--draft-max " + draftMax + ": " + spec);
            long[] counts = checkAcceptance(spec);
            assertTrue(counts[0] > 0, "the exit drafted nothing: " + spec);
            assertEquals(0, counts[1], spec.toString());
            for (JsonNode e : spec.get("exits")) assertEquals(2, e.intValue(), "a rejected draft's token comes from the final head: " + spec);
        }
    }

    @Test
    void draftsTheFullModelAcceptsKeepTheirExitLayer(@TempDir Path tmp) throws Exception {
        String dir = model(tmp, m -> TestRows.favour(m, EXIT_ROW)).toString();
        var full = generate(dir, "--threshold", "1");
        var spec = generate(dir, "--threshold", "0.5", "--speculative");
        assertArrayEquals(ints(full.get("tokens")), ints(spec.get("tokens")), spec.toString());
        long[] counts = checkAcceptance(spec);
        assertTrue(counts[0] > 0, spec.toString());
        assertEquals(counts[0], counts[1], "the exit's token is the full model's: " + spec);
        long fromExit = 0;
        for (JsonNode e : spec.get("exits")) if (e.intValue() == 1) fromExit++;
        assertEquals(counts[1], fromExit, "each accepted draft is marked with the exit that drafted it: " + spec);

        // without --json: the text on stdout, one acceptance line per exit on stderr
        var text = exeunt("generate", "--model", dir, "--prompt-ids", PROMPT, "--max-new-tokens", "12", "--threshold", "0.5", "--speculative");
        assertEquals(0, text.code(), text.err());
        assertTrue(text.err().contains("exit@1: " + counts[0] + " drafts, " + counts[1] + " accepted (100.0%)"), text.err());
        assertFalse(text.out().contains("drafts"), text.out());
    }

    @Test
    void speculativeWithoutEarlyExitDraftsNothing(@TempDir Path tmp) throws Exception {
        String dir = model(tmp, m -> TestRows.favour(m, EXIT_ROW)).toString();
        var spec = generate(dir, "--threshold", "1", "--speculative");
        assertArrayEquals(ints(generate(dir).get("tokens")), ints(spec.get("tokens")));
        assertArrayEquals(new long[] {0, 0}, checkAcceptance(spec));
        var text = exeunt("generate", "--model", dir, "--prompt-ids", PROMPT, "--max-new-tokens", "4", "--speculative");
        assertEquals(0, text.code(), text.err());
        assertTrue(text.err().contains("exit@1: 0 drafts, 0 accepted") && !text.err().contains("NaN"), text.err());
        var plain = exeunt("generate", "--model", dir, "--prompt-ids", PROMPT, "--max-new-tokens", "4");
        assertFalse(plain.err().contains("drafts"), "only --speculative reports drafts: " + plain.err());
    }

    @Test
    void badSpeculativeOptionsAreRefusedNamingTheFlag(@TempDir Path tmp) throws Exception {
        String dir = model(tmp, m -> TestRows.favour(m, EXIT_ROW)).toString();
        String[][] bad = {
                {"--speculative", "--draft-max", "0"}, {"--speculative", "--draft-max", "-3"}, {"--speculative", "--draft-max", "two"},
                {"--draft-max", "3"}, {"--speculative=maybe"}, {"--kv-fill", "guess"}, {"--speculative", "--kv-fill", "propagate"}};
        String[] says = {"--draft-max must be >= 1", "--draft-max must be >= 1", "--draft-max expects an integer", "add --speculative", "--speculative",
                "--kv-fill must be recompute or propagate", "cannot be combined with --kv-fill propagate"};
        for (int i = 0; i < bad.length; i++) {
            var args = new java.util.ArrayList<>(List.of("generate", "--model", dir, "--prompt-ids", PROMPT));
            args.addAll(List.of(bad[i]));
            var r = exeunt(args.toArray(String[]::new));
            assertEquals(2, r.code(), String.join(" ", bad[i]) + ": " + r.err());
            assertTrue(r.err().contains(says[i]), String.join(" ", bad[i]) + ": " + r.err());
        }
        var sweep = exeunt("sweep", "--model", dir, "--prompt", "the fox", "--speculative", "--draft-max", "0");
        assertEquals(2, sweep.code(), sweep.err());
        assertTrue(sweep.err().contains("--draft-max must be >= 1"), sweep.err());
        var noRepeats = exeunt("sweep", "--model", dir, "--prompt", "the fox", "--speculative", "--repeats", "0");
        assertEquals(2, noRepeats.code(), noRepeats.err());
        assertTrue(noRepeats.err().contains("--repeats must be >= 1"), noRepeats.err());
        var serve = exeunt("serve", "--model", dir, "--port", "0", "--speculative", "--draft-max", "0");
        assertEquals(1, serve.code(), serve.err());
        assertTrue(serve.err().contains("--draft-max must be >= 1"), serve.err());
    }

    @Test
    void aSpeculativeSweepAgreesWithTheFullModelAtEveryThreshold(@TempDir Path tmp) throws Exception {
        String dir = model(tmp, m -> TestRows.disagree(m, EXIT_ROW, FINAL_ROW)).toString();
        String[] common = {"sweep", "--model", dir, "--prompt", "the quick fox", "--thresholds", "1,0.5", "--max-new-tokens", "8",
                "--repeats", "1", "--json"};
        var thresholded = json(exeunt(common));
        assertTrue(thresholded.get(1).get("agreement").doubleValue() < 0.5, "the exit is wrong at 0.5: " + thresholded);
        assertFalse(thresholded.get(1).get("speculative").booleanValue());
        var args = new java.util.ArrayList<>(List.of(common));
        args.add("--speculative");
        var spec = json(exeunt(args.toArray(String[]::new)));
        assertEquals(2, spec.size());
        for (JsonNode row : spec) {
            assertTrue(row.get("speculative").booleanValue(), row.toString());
            assertEquals(1.0, row.get("agreement").doubleValue(), 1e-9, row.toString());
            assertEquals(1.0, row.get("prefix_agreement").doubleValue(), 1e-9, row.toString());
            checkAcceptance(row);
        }
        assertArrayEquals(new long[] {0, 0}, checkAcceptance(spec.get(0)), "threshold 1 drafts nothing");
        assertTrue(checkAcceptance(spec.get(1))[0] > 0, spec.toString());

        args.remove("--json");
        var table = exeunt(args.toArray(String[]::new));
        assertEquals(0, table.code(), table.err());
        String[] lines = table.out().split("\n");
        assertTrue(lines[0].contains("accepted") && lines[0].contains("exit@1"), table.out());
        String[] row = lines[2].trim().split("\\s+"); // threshold, tokens/s, full tok/s, speedup, agreement, prefix, accepted, exit@1, final
        assertEquals("0.500", row[0], table.out());
        assertEquals("100.0%", row[4], table.out());
        assertEquals("0.0%", row[6], "no draft accepted: " + table.out());
    }

    /**
     * --kv-fill propagate and --adaptive run through the CLI: with an exit that is always sure, every token
     * after the first exits under propagation too, and adaptive gating keeps checking an exit that pays.
     */
    @Test
    void kvFillPropagateAndAdaptiveGating(@TempDir Path tmp) throws Exception {
        String dir = model(tmp, m -> TestRows.favour(m, EXIT_ROW)).toString();
        for (String[] extra : new String[][] {{"--kv-fill", "propagate"}, {"--adaptive"}, {"--kv-fill", "recompute", "--adaptive"}}) {
            var args = new java.util.ArrayList<>(List.of("--threshold", "0.5", "--no-warmup"));
            args.addAll(List.of(extra));
            JsonNode out = generate(dir, args.toArray(String[]::new));
            JsonNode exits = out.get("exits");
            assertEquals(12, exits.size(), out.toString());
            for (int i = 1; i < exits.size(); i++) assertEquals(1, exits.get(i).intValue(), String.join(" ", extra) + ": " + out);
        }
    }

    /**
     * The warm-up decodes on the real model before the timed run: it leaves nothing behind that changes the
     * output (a sampler's state, an adaptive gate's counts, a draft), and says what it did on stderr.
     */
    @Test
    void theWarmUpDoesNotChangeTheOutput(@TempDir Path tmp) throws Exception {
        String dir = model(tmp, m -> TestRows.disagree(m, EXIT_ROW, FINAL_ROW)).toString();
        String[] mode = {"--threshold", "0.5", "--speculative", "--adaptive", "--temperature", "0.9", "--seed", "3"};
        var cold = generate(dir, concat(mode, "--no-warmup"));
        var args = new java.util.ArrayList<>(List.of("generate", "--model", dir, "--prompt-ids", PROMPT, "--max-new-tokens", "12", "--json"));
        args.addAll(List.of(mode));
        var warm = exeunt(args.toArray(String[]::new));
        assertEquals(0, warm.code(), warm.err());
        assertTrue(warm.err().contains("warmed up the JIT on the model"), warm.err());
        assertArrayEquals(ints(cold.get("tokens")), ints(json(warm).get("tokens")), warm.out());
        assertEquals(cold.get("acceptance"), json(warm).get("acceptance"));
    }

    private static String[] concat(String[] a, String... b) {
        String[] out = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }
}
