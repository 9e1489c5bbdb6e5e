package dev.exeunt.cli;

import static dev.exeunt.cli.CliEndToEndTest.exeunt;
import static dev.exeunt.cli.CliEndToEndTest.json;
import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The silent mismatches of issue 9 are refused with both tokenizers named: eval, tune and train on a
 * dataset made with another tokenizer of the same size, generate with a foreign tokenizer.json next to
 * the model, and resuming a checkpoint with another tokenizer; --force lets them through.
 */
class TokenizerMismatchCliTest {

    @Test
    void foreignDatasetsAndTokenizersAreRefusedUnlessForced(@TempDir Path tmp) throws Exception {
        List<String> lines = new ArrayList<>();
        try (Stream<Path> files = Files.walk(Path.of("src/main/java"))) {
            for (Path p : files.filter(f -> f.toString().endsWith(".java")).sorted().toList()) lines.addAll(Files.readAllLines(p));
        }
        Path textA = tmp.resolve("a.txt"), textB = tmp.resolve("b.txt");
        Files.write(textA, lines);
        List<String> reversed = new ArrayList<>(lines.stream().map(l -> new StringBuilder(l).reverse().toString()).toList());
        Collections.reverse(reversed);
        Files.write(textB, reversed);
        String dataA = tmp.resolve("a/data.arrow").toString(), dataB = tmp.resolve("b/data.arrow").toString();
        json(exeunt("prepare", "--input", textA.toString(), "--train-tokenizer", "350", "--out", dataA, "--json"));
        json(exeunt("prepare", "--input", textB.toString(), "--train-tokenizer", "350", "--out", dataB, "--json"));
        assertNotEquals(Files.readString(tmp.resolve("a/tokenizer.json")), Files.readString(tmp.resolve("b/tokenizer.json")));

        String model = tmp.resolve("model").toString();
        json(exeunt("train", "--data", dataA, "--out", model, "--layers", "1", "--d-model", "16", "--heads", "2",
                "--seq-len", "16", "--batch", "2", "--iters", "2", "--exits", "", "--json"));

        // eval on data from another tokenizer of the same size (issue 9: perplexity 2235, accepted)
        var eval = exeunt("eval", "--model", model, "--data", dataB, "--batches", "1", "--seq-len", "16", "--json");
        assertEquals(1, eval.code(), eval.err());
        assertTrue(eval.err().contains("dataset " + dataB + " was tokenized with tokenizer sha256:")
                && eval.err().contains("the model " + model + " uses sha256:") && eval.err().contains("pass --force"), eval.err());
        json(exeunt("eval", "--model", model, "--data", dataB, "--batches", "1", "--seq-len", "16", "--force", "--json"));
        json(exeunt("eval", "--model", model, "--data", dataA, "--batches", "1", "--seq-len", "16", "--json"));

        var tune = exeunt("tune", "--model", model, "--data", dataB, "--exits", "1", "--out", tmp.resolve("tuned").toString(),
                "--seq-len", "16", "--batch", "2", "--iters", "1", "--json");
        assertEquals(1, tune.code(), tune.err());
        assertTrue(tune.err().contains("was tokenized with tokenizer") && tune.err().contains("--force"), tune.err());

        var train = exeunt("train", "--data", dataB, "--tokenizer", tmp.resolve("a/tokenizer.json").toString(), "--out",
                tmp.resolve("other").toString(), "--layers", "1", "--d-model", "16", "--heads", "2", "--seq-len", "16", "--batch", "2",
                "--iters", "1", "--exits", "", "--json");
        assertEquals(1, train.code(), train.err());
        assertTrue(train.err().contains("the tokenizer given to train uses"), train.err());

        var resume = exeunt("train", "--data", dataB, "--out", model, "--layers", "1", "--d-model", "16", "--heads", "2",
                "--seq-len", "16", "--batch", "2", "--iters", "2", "--exits", "", "--json");
        assertEquals(1, resume.code(), resume.err());
        assertTrue(resume.err().contains("checkpoint in " + model + " was trained with tokenizer"), resume.err());

        // a foreign tokenizer.json of the same size dropped next to the model
        Files.copy(tmp.resolve("b/tokenizer.json"), Path.of(model, "tokenizer.json"), StandardCopyOption.REPLACE_EXISTING);
        var gen = exeunt("generate", "--model", model, "--prompt", "public", "--max-new-tokens", "2", "--json");
        assertEquals(1, gen.code(), gen.err());
        assertTrue(gen.err().contains(Path.of(model, "tokenizer.json") + " is tokenizer sha256:") && gen.err().contains("--force"), gen.err());
        json(exeunt("generate", "--model", model, "--prompt", "public", "--max-new-tokens", "2", "--force", "--json"));
    }
}
