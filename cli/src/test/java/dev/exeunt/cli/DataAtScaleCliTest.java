package dev.exeunt.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.exeunt.model.io.HfDatasetDirectory;
import dev.exeunt.model.io.TokenDataset;
import dev.exeunt.model.io.TokenDatasetWriter;
import dev.exeunt.model.tokenizer.BpeTokenizer;
import dev.exeunt.model.tokenizer.BpeTrainer;
import dev.exeunt.model.tokenizer.HfTokenizerJson;
import dev.exeunt.model.tokenizer.TokenizerHash;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Data at scale through the real commands: {@code train} on a dataset larger than the heap of the JVM
 * it runs in, and {@code prepare --num-shards} writing a Hugging Face dataset directory that
 * {@code train} and {@code eval} read as the single file.
 */
class DataAtScaleCliTest {
    private static final long TOKENS = 40_000_000L; // 160 MB of int32 ids
    private static final int HEAP_MB = 64;

    @Test
    void trainsOnADatasetLargerThanItsHeap(@TempDir Path tmp) throws Exception {
        BpeTokenizer tok = BpeTrainer.train(List.of("the quick brown fox jumps over the lazy dog"), 300, List.of("<|endoftext|>"));
        Path tokenizer = tmp.resolve("tokenizer.json");
        HfTokenizerJson.save(tok, tokenizer);
        Path ds = tmp.resolve("big");
        Files.createDirectories(ds);
        // two shards of 20M tokens, written directly (no tokenizer pass): ids follow a pattern below the vocabulary
        var o = TokenDatasetWriter.Options.DEFAULT.withBatchSize(256).withMetadata(TokenDatasetWriter.TOKENIZER_HASH, TokenizerHash.of(tok));
        int docLen = 10_000;
        int[] doc = new int[docLen];
        List<String> names = new ArrayList<>();
        for (int s = 0; s < 2; s++) {
            String name = HfDatasetDirectory.shardName(s, 2);
            names.add(name);
            long first = s * TOKENS / 2;
            TokenDatasetWriter.write(ds.resolve(name), o, null, w -> {
                for (long t = first; t < first + TOKENS / 2; t += docLen) {
                    for (int i = 0; i < docLen; i++) doc[i] = (int) ((t + i) % 251);
                    w.add(doc);
                }
            });
        }
        HfDatasetDirectory.writeMetadata(ds, names, false);
        long bytes;
        try (Stream<Path> f = Files.list(ds)) {
            bytes = f.mapToLong(p -> p.toFile().length()).sum();
        }
        assertTrue(bytes > 2L * HEAP_MB << 20, "dataset of " + bytes + " bytes is over twice the child's heap");

        Path java = Path.of(System.getProperty("java.home"), "bin", "java");
        List<String> cmd = new ArrayList<>(List.of(java.toString(), "-Xmx" + HEAP_MB + "m", "-XX:TieredStopAtLevel=1",
                "--add-modules=jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                "dev.exeunt.cli.Main", "train", "--data", ds.toString(), "--tokenizer", tokenizer.toString(),
                "--out", tmp.resolve("m").toString(), "--layers", "1", "--d-model", "32", "--heads", "2", "--seq-len", "64",
                "--batch", "4", "--iters", "3", "--eval-every", "3", "--eval-batches", "1", "--json"));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(false).start();
        p.getOutputStream().close();
        var err = new java.io.ByteArrayOutputStream();
        Thread drain = Thread.ofVirtual().start(() -> {
            try {
                p.getErrorStream().transferTo(err);
            } catch (java.io.IOException ignored) {
                // the process ended
            }
        });
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(120, TimeUnit.SECONDS), "train finishes");
        drain.join();
        String stderr = err.toString(StandardCharsets.UTF_8);
        assertEquals(0, p.exitValue(), stderr);
        assertTrue(stderr.contains("data: 40,000,000 tokens"), stderr);
        JsonNode r = CliEndToEndTest.json(new CliEndToEndTest.Run(0, out, stderr));
        assertEquals(3, r.get("iterations").asInt());
        double loss = r.get("loss").asDouble();
        assertTrue(loss > 0 && loss < 10, "finite loss " + loss);
    }

    /** prepare --num-shards writes what save_to_disk does; train and eval read it as the one file. */
    @Test
    void preparedShardDirectoryTrainsAndEvaluatesAsTheSingleFile(@TempDir Path tmp) throws Exception {
        Path corpus = tmp.resolve("corpus");
        Files.createDirectories(corpus);
        StringBuilder text = new StringBuilder();
        for (int i = 0; i < 300; i++) text.append("document ").append(i).append(": the quick brown fox jumps over the lazy dog\n");
        for (int f = 0; f < 5; f++) Files.writeString(corpus.resolve("f" + f + ".txt"), text.toString().replace("fox", "fox" + f));
        Path single = tmp.resolve("data/train.arrow");
        Path dir = tmp.resolve("data/train_ds");
        assertEquals(0, CliEndToEndTest.exeunt("prepare", "--input", corpus.toString(), "--train-tokenizer", "300", "--out",
                single.toString(), "--threads", "1").code());
        Path tokenizer = tmp.resolve("data/tokenizer.json");
        var prep = CliEndToEndTest.json(CliEndToEndTest.exeunt("prepare", "--input", corpus.toString(), "--tokenizer",
                tokenizer.toString(), "--out", dir.toString(), "--num-shards", "3", "--threads", "1", "--json"));
        assertTrue(prep.get("documents").asLong() >= 3);
        // --input given twice reads both (here: two of the five files, each one document)
        var two = CliEndToEndTest.json(CliEndToEndTest.exeunt("prepare", "--input", corpus.resolve("f0.txt").toString(), "--input",
                corpus.resolve("f1.txt").toString(), "--tokenizer", tokenizer.toString(), "--out", tmp.resolve("data/two.arrow").toString(), "--json"));
        assertEquals(2, two.get("documents").asLong(), two.toString());
        for (String n : List.of("data-00000-of-00003.arrow", "data-00001-of-00003.arrow", "data-00002-of-00003.arrow",
                "state.json", "dataset_info.json")) {
            assertTrue(Files.isRegularFile(dir.resolve(n)), n);
        }
        String[] model = {"--layers", "1", "--d-model", "32", "--heads", "2", "--seq-len", "16", "--batch", "2", "--iters", "2", "--json"};
        JsonNode a = CliEndToEndTest.json(CliEndToEndTest.exeunt(concat(new String[] {"train", "--data", single.toString(),
                "--out", tmp.resolve("a").toString()}, model)));
        JsonNode b = CliEndToEndTest.json(CliEndToEndTest.exeunt(concat(new String[] {"train", "--data", dir.toString(),
                "--tokenizer", tokenizer.toString(), "--out", tmp.resolve("b").toString()}, model)));
        assertEquals(a.get("loss").asDouble(), b.get("loss").asDouble(), 0.0, "same data, same losses");
        String evalSingle = CliEndToEndTest.exeunt("eval", "--model", tmp.resolve("a").toString(), "--data", single.toString(),
                "--batches", "2", "--json").out();
        String evalDir = CliEndToEndTest.exeunt("eval", "--model", tmp.resolve("a").toString(), "--data", dir.toString(),
                "--batches", "2", "--json").out();
        assertTrue(evalSingle.contains("{"), evalSingle);
        assertEquals(evalSingle, evalDir);
        // --max-shard-size: int(bytes / size) + 1 shards, as save_to_disk counts them, holding the same tokens
        Path bySize = tmp.resolve("data/by_size");
        assertEquals(0, CliEndToEndTest.exeunt("prepare", "--input", corpus.toString(), "--tokenizer", tokenizer.toString(),
                "--out", bySize.toString(), "--max-shard-size", "20KB", "--threads", "1").code());
        int expectedShards = (int) (Files.size(single) / 20_000 + 1);
        assertTrue(expectedShards >= 2, "the corpus spans several 20 KB shards");
        assertEquals(expectedShards, HfDatasetDirectory.shards(bySize).size());
        try (var x = TokenDataset.open(single); var y = TokenDataset.open(bySize)) {
            int[] a1 = new int[Math.toIntExact(x.tokenCount())];
            int[] b1 = new int[Math.toIntExact(y.tokenCount())];
            x.read(0, a1, 0, a1.length);
            y.read(0, b1, 0, b1.length);
            org.junit.jupiter.api.Assertions.assertArrayEquals(a1, b1);
        }
        var bad = CliEndToEndTest.exeunt("prepare", "--input", corpus.toString(), "--tokenizer", tokenizer.toString(), "--out",
                tmp.resolve("x").toString(), "--max-shard-size", "lots");
        assertEquals(2, bad.code(), bad.err());
        assertTrue(bad.err().contains("--max-shard-size"), bad.err());
    }

    private static String[] concat(String[] a, String[] b) {
        String[] c = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, c, a.length, b.length);
        return c;
    }
}
