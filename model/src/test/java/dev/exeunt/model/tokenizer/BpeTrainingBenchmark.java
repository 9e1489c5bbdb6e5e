package dev.exeunt.model.tokenizer;

import java.util.List;

/**
 * Manual benchmark (not a test): trains on java.base sources from the JDK's src.zip.
 * Args: [megabytes of text, default 10] [vocab size, default 8192].
 */
public final class BpeTrainingBenchmark {
    public static void main(String[] args) throws Exception {
        double mb = args.length > 0 ? Double.parseDouble(args[0]) : 10;
        int vocab = args.length > 1 ? Integer.parseInt(args[1]) : 8192;
        long t0 = System.nanoTime();
        List<String> texts = BpeTrainerTest.jdkSourcesUnder("java.base/", (long) (mb * 1_000_000));
        long chars = texts.stream().mapToLong(String::length).sum();
        long t1 = System.nanoTime();
        BpeTrainer trainer = new BpeTrainer(vocab, List.of("<|endoftext|>"));
        for (String s : texts) trainer.addText(s);
        long t2 = System.nanoTime();
        BpeTokenizer tok = trainer.train();
        long t3 = System.nanoTime();
        long tokens = 0;
        for (String s : texts) tokens += tok.encode(s).length;
        long t4 = System.nanoTime();
        System.out.printf("files=%d chars=%.1fM read=%.2fs pretokenize+count=%.2fs (%d distinct words) merges=%.2fs (%d merges) "
                        + "encode-all=%.2fs (%.2f chars/token)%n",
                texts.size(), chars / 1e6, (t1 - t0) / 1e9, (t2 - t1) / 1e9, trainer.distinctWords(), (t3 - t2) / 1e9,
                tok.merges().size(), (t4 - t3) / 1e9, (double) chars / tokens);
    }
}
