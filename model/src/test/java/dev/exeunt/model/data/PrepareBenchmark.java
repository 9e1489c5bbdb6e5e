package dev.exeunt.model.data;

import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Manual benchmark (not a test): trains a tokenizer on part of the JDK's src.zip, then runs
 * {@link Prepare} over a prefix of it with 1 and N threads.
 * Args: [megabytes to tokenize, default 20] [vocab size, default 8192] [sample MB, default 5] [max threads, default 2].
 */
public final class PrepareBenchmark {
    public static void main(String[] args) throws Exception {
        double mb = args.length > 0 ? Double.parseDouble(args[0]) : 20;
        int vocab = args.length > 1 ? Integer.parseInt(args[1]) : 8192;
        double sampleMb = args.length > 2 ? Double.parseDouble(args[2]) : 5;
        int maxThreads = args.length > 3 ? Integer.parseInt(args[3]) : 2;
        Path src = Path.of(System.getProperty("java.home"), "lib", "src.zip");
        Path dir = Files.createTempDirectory("prepare-bench");
        try {
            Prepare.Stats trained = Prepare.run(Prepare.Options.builder().input(src).trainTokenizer(vocab)
                    .sampleBytes((long) (sampleMb * 1e6)).limitBytes((long) (sampleMb * 1e6)).threads(1)
                    .output(dir.resolve("sample.arrow")).progress(System.err).build());
            System.out.println("train+sample: " + trained);
            for (int threads = 1; threads <= maxThreads; threads++) {
                Prepare.Stats st = Prepare.run(Prepare.Options.builder().input(src).tokenizer(trained.tokenizer())
                        .limitBytes((long) (mb * 1e6)).threads(threads).output(dir.resolve("t" + threads + ".arrow"))
                        .progress(System.err).build());
                System.out.println("threads=" + threads + ": " + st);
            }
        } finally {
            try (var s = Files.walk(dir)) {
                s.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
    }
}
