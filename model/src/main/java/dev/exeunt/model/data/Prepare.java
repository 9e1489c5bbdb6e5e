package dev.exeunt.model.data;

import dev.exeunt.model.io.DatasetSharder;
import dev.exeunt.model.io.TokenDatasetWriter;
import dev.exeunt.model.tokenizer.BpeTokenizer;
import dev.exeunt.model.tokenizer.BpeTrainer;
import dev.exeunt.model.tokenizer.HfTokenizerJson;
import dev.exeunt.model.tokenizer.Tokenizer;
import dev.exeunt.model.tokenizer.TokenizerHash;
import dev.exeunt.model.util.ProgressBar;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The {@code prepare} pipeline: text in ({@link TextSource}), token ids out (an Arrow IPC stream file
 * with one {@code list<int32>} column {@code input_ids}, one row per document, see
 * {@link TokenDatasetWriter}).
 *
 * <p>The tokenizer is either loaded from a {@code tokenizer.json} or trained first: a byte-level BPE
 * of {@link Options#trainVocabSize()} tokens, with {@value #EOT} as its special token, on the first
 * {@link Options#sampleBytes()} bytes of the same input, saved as {@link Options#tokenizerOutput()}
 * ({@code tokenizer.json} beside the output by default).
 *
 * <p>Each document becomes {@code [BOS] encode(text) [EOS]} (BOS only with {@link Options#addBos()}, EOS
 * by default when the tokenizer has one). Special-token strings written in the text are encoded as
 * plain text unless {@link Options#parseSpecialTokens()}.
 *
 * <p>With {@link Options#threads()} {@code > 1}, documents are tokenized on a pool of that many threads
 * while the calling thread reads documents and writes results in document order; at most
 * {@code 4 * threads} documents are in flight. The output is identical for every thread count.
 *
 * <p>The output file and the trained tokenizer appear only when everything succeeded; on failure
 * neither is left behind (files that existed before are not touched).
 */
public final class Prepare {
    /** The special token of a trained tokenizer, used as its EOS. */
    public static final String EOT = "<|endoftext|>";

    /** Default bytes of input a new tokenizer is trained on. */
    public static final long DEFAULT_SAMPLE_BYTES = 20_000_000L;

    private Prepare() {}

    /**
     * What to do. Build with {@link #builder()}.
     *
     * @param inputs             files, directories, {@code .zip} or {@code .jsonl} files (see {@link TextSource})
     * @param extensions         file extensions read from directories and zips
     * @param allFiles           read every non-binary file of directories and zips, whatever its extension
     * @param tokenizer          a {@code tokenizer.json} to use, or null to train one
     * @param trainVocabSize     vocabulary size of the tokenizer to train (when {@code tokenizer} is null)
     * @param sampleBytes        input bytes the tokenizer is trained on (default 20 MB)
     * @param output             the {@code .arrow} file to write
     * @param tokenizerOutput    where a trained tokenizer is saved; null: {@code tokenizer.json} beside {@code output}
     * @param appendEos          append EOS to each document; null: when the tokenizer has an EOS id
     * @param addBos             prepend the tokenizer's BOS to each document (if it has one)
     * @param parseSpecialTokens encode special-token strings in the text as their ids (default: as plain text)
     * @param batchSize          documents per Arrow record batch
     * @param limitBytes         stop after this many input bytes; {@code <= 0}: no limit
     * @param threads            tokenizer threads ({@code 1}: all on the calling thread)
     * @param numShards          write {@code output} as a Hugging Face dataset directory of this many shards
     *                           ({@code save_to_disk}'s {@code num_shards}); 0: as one file, unless {@code maxShardSize}
     * @param maxShardSize       write a dataset directory with shards of at most about this many bytes
     *                           ({@code save_to_disk}'s {@code max_shard_size}); 0: no limit
     * @param progress           where to draw progress bars, or null for none
     */
    public record Options(
            List<Path> inputs,
            List<String> extensions,
            boolean allFiles,
            Path tokenizer,
            int trainVocabSize,
            long sampleBytes,
            Path output,
            Path tokenizerOutput,
            Boolean appendEos,
            boolean addBos,
            boolean parseSpecialTokens,
            int batchSize,
            long limitBytes,
            int threads,
            int numShards,
            long maxShardSize,
            PrintStream progress) {

        public Options {
            inputs = List.copyOf(inputs);
            extensions = List.copyOf(extensions);
            if (inputs.isEmpty()) {
                throw new IllegalArgumentException("no input path given");
            }
            Objects.requireNonNull(output, "output");
            if (tokenizer == null && trainVocabSize <= 0) {
                throw new IllegalArgumentException("give a tokenizer.json or a vocabulary size to train one");
            }
            if (tokenizer != null && trainVocabSize > 0) {
                throw new IllegalArgumentException("give either a tokenizer.json or a vocabulary size to train, not both");
            }
            if (trainVocabSize > 0 && trainVocabSize < 257) {
                throw new IllegalArgumentException("vocabulary size " + trainVocabSize
                        + " is too small: 256 byte tokens + " + EOT + " need 257");
            }
            if (sampleBytes <= 0) {
                throw new IllegalArgumentException("sampleBytes must be positive: " + sampleBytes);
            }
            if (batchSize <= 0) {
                throw new IllegalArgumentException("batchSize must be positive: " + batchSize);
            }
            if (threads <= 0) {
                throw new IllegalArgumentException("threads must be positive: " + threads);
            }
            if (numShards < 0 || numShards > 99_999 || maxShardSize < 0) {
                throw new IllegalArgumentException("number of shards must be in [0, 99999] and the shard size >= 0: "
                        + numShards + ", " + maxShardSize);
            }
            if (numShards > 0 && maxShardSize > 0) {
                throw new IllegalArgumentException("give either a number of shards or a maximum shard size, not both");
            }
        }

        /** Whether {@link #output()} is a Hugging Face dataset directory of shards rather than one file. */
        public boolean sharded() {
            return numShards > 0 || maxShardSize > 0;
        }

        public static Builder builder() {
            return new Builder();
        }

        /** Where the trained tokenizer goes: {@link #tokenizerOutput()} or {@code tokenizer.json} beside the output. */
        public Path trainedTokenizerPath() {
            if (tokenizerOutput != null) {
                return tokenizerOutput;
            }
            Path parent = output.toAbsolutePath().getParent();
            return parent.resolve("tokenizer.json");
        }

        public TextSource.Options sourceOptions() {
            return new TextSource.Options(inputs, extensions, allFiles, limitBytes);
        }

        public Builder toBuilder() {
            Builder b = new Builder();
            b.inputs = new ArrayList<>(inputs);
            b.extensions = extensions;
            b.allFiles = allFiles;
            b.tokenizer = tokenizer;
            b.trainVocabSize = trainVocabSize;
            b.sampleBytes = sampleBytes;
            b.output = output;
            b.tokenizerOutput = tokenizerOutput;
            b.appendEos = appendEos;
            b.addBos = addBos;
            b.parseSpecialTokens = parseSpecialTokens;
            b.batchSize = batchSize;
            b.limitBytes = limitBytes;
            b.threads = threads;
            b.progress = progress;
            return b;
        }
    }

    /** Builder for {@link Options}; {@code input}, {@code output} and one of {@code tokenizer}/{@code trainTokenizer} are required. */
    public static final class Builder {
        private List<Path> inputs = new ArrayList<>();
        private List<String> extensions = TextSource.DEFAULT_EXTENSIONS;
        private boolean allFiles;
        private Path tokenizer;
        private int trainVocabSize;
        private long sampleBytes = DEFAULT_SAMPLE_BYTES;
        private Path output;
        private Path tokenizerOutput;
        private Boolean appendEos;
        private boolean addBos;
        private boolean parseSpecialTokens;
        private int batchSize = TokenDatasetWriter.Options.DEFAULT.batchSize();
        private long limitBytes;
        private int threads = Math.max(1, Runtime.getRuntime().availableProcessors());
        private int numShards;
        private long maxShardSize;
        private PrintStream progress;

        private Builder() {}

        /** Adds an input (file, directory, .zip or .jsonl); may be called repeatedly. */
        public Builder input(Path p) {
            inputs.add(Objects.requireNonNull(p));
            return this;
        }

        public Builder inputs(List<Path> ps) {
            inputs.addAll(ps);
            return this;
        }

        public Builder extensions(List<String> e) {
            extensions = List.copyOf(e);
            return this;
        }

        /** The CLI's {@code --all-files}. */
        public Builder allFiles(boolean b) {
            allFiles = b;
            return this;
        }

        /** Use this {@code tokenizer.json}. */
        public Builder tokenizer(Path p) {
            tokenizer = p;
            return this;
        }

        /** Train a byte-level BPE tokenizer of this vocabulary size (the CLI's {@code --train-tokenizer VOCAB}). */
        public Builder trainTokenizer(int vocabSize) {
            trainVocabSize = vocabSize;
            return this;
        }

        public Builder sampleBytes(long n) {
            sampleBytes = n;
            return this;
        }

        public Builder output(Path p) {
            output = p;
            return this;
        }

        public Builder tokenizerOutput(Path p) {
            tokenizerOutput = p;
            return this;
        }

        public Builder appendEos(Boolean b) {
            appendEos = b;
            return this;
        }

        public Builder addBos(boolean b) {
            addBos = b;
            return this;
        }

        public Builder parseSpecialTokens(boolean b) {
            parseSpecialTokens = b;
            return this;
        }

        public Builder batchSize(int n) {
            batchSize = n;
            return this;
        }

        public Builder limitBytes(long n) {
            limitBytes = n;
            return this;
        }

        public Builder threads(int n) {
            threads = n;
            return this;
        }

        /** Write a dataset directory of {@code n} shards (the CLI's {@code --num-shards}). */
        public Builder numShards(int n) {
            numShards = n;
            return this;
        }

        /** Write a dataset directory of shards of at most {@code bytes} each (the CLI's {@code --max-shard-size}). */
        public Builder maxShardSize(long bytes) {
            maxShardSize = bytes;
            return this;
        }

        /** Draw progress bars on this stream (e.g. {@code System.err}); null (default): silent. */
        public Builder progress(PrintStream out) {
            progress = out;
            return this;
        }

        public Options build() {
            return new Options(inputs, extensions, allFiles, tokenizer, trainVocabSize, sampleBytes, output,
                    tokenizerOutput, appendEos, addBos, parseSpecialTokens, batchSize, limitBytes, threads, numShards,
                    maxShardSize, progress);
        }
    }

    /**
     * Result of a run.
     *
     * @param documents      documents written
     * @param tokens         tokens written (EOS/BOS included)
     * @param bytes          input bytes tokenized
     * @param seconds        wall time of the tokenizing pass
     * @param trainSeconds   wall time spent training the tokenizer (0 when loaded)
     * @param skippedBinary  files skipped as binary
     * @param output         the written {@code .arrow} file
     * @param tokenizer      the tokenizer file used or written
     * @param eosId          the EOS id appended to each document, or -1
     */
    public record Stats(long documents, long tokens, long bytes, double seconds, double trainSeconds,
            long skippedBinary, Path output, Path tokenizer, int eosId) {

        public double tokensPerSecond() {
            return seconds > 0 ? tokens / seconds : 0;
        }

        public double megabytesPerSecond() {
            return seconds > 0 ? bytes / 1e6 / seconds : 0;
        }

        @Override
        public String toString() {
            return String.format(Locale.ROOT,
                    "%,d documents, %,d tokens from %.1f MB in %.2f s (%,.0f tokens/s, %.2f MB/s)%s -> %s",
                    documents, tokens, bytes / 1e6, seconds, tokensPerSecond(), megabytesPerSecond(),
                    trainSeconds > 0 ? String.format(Locale.ROOT, "; tokenizer trained in %.2f s", trainSeconds) : "",
                    output);
        }
    }

    /** Runs the pipeline. */
    public static Stats run(Options o) throws IOException {
        TextSource source = new TextSource(o.sourceOptions());
        source.checkInputs();
        if (o.tokenizer() != null && !Files.isRegularFile(o.tokenizer())) {
            throw new java.nio.file.NoSuchFileException(o.tokenizer().toString(), null, "tokenizer file not found");
        }

        Tokenizer tok;
        Path tokenizerPath;
        Path trainedTemp = null;
        double trainSeconds = 0;
        int eos;
        try {
            if (o.tokenizer() != null) {
                tok = HfTokenizerJson.load(o.tokenizer());
                tokenizerPath = o.tokenizer();
            } else {
                long t0 = System.nanoTime();
                BpeTokenizer trained = train(source, o);
                trainSeconds = (System.nanoTime() - t0) / 1e9;
                tokenizerPath = o.trainedTokenizerPath();
                Path dir = tokenizerPath.toAbsolutePath().getParent();
                Files.createDirectories(dir);
                trainedTemp = Files.createTempFile(dir, "." + tokenizerPath.getFileName() + ".", ".tmp");
                HfTokenizerJson.save(trained, trainedTemp);
                tok = trained;
            }
            eos = resolveEos(tok, o);
            long t0 = System.nanoTime();
            Counts counts = new Counts();
            var writeOptions = TokenDatasetWriter.Options.DEFAULT.withBatchSize(o.batchSize())
                    .withMetadata(TokenDatasetWriter.TOKENIZER_HASH, TokenizerHash.of(tok))
                    .withMetadata(TokenDatasetWriter.TOKENIZER_PATH, tokenizerPath.toString());
            // shards split one finished file, so each gets whole documents in order (as datasets' shard())
            Path single = o.sharded() ? singleFileFor(o.output()) : o.output();
            TokenDatasetWriter.Stats ws;
            try {
                ws = TokenDatasetWriter.write(single, writeOptions, null, w -> tokenize(source, tok, eos, o, w, counts));
                if (o.sharded()) {
                    int n = o.numShards() > 0 ? o.numShards() : DatasetSharder.shardsFor(Files.size(single), o.maxShardSize());
                    DatasetSharder.split(single, o.output(), n, writeOptions);
                }
            } finally {
                if (o.sharded()) Files.deleteIfExists(single);
            }
            double secs = (System.nanoTime() - t0) / 1e9;
            if (ws.documents() == 0) {
                // An empty dataset would only fail later, in train, far from the cause.
                dev.exeunt.model.checkpoint.ModelCheckpoint.deleteRecursively(o.output());
                throw new IllegalArgumentException("no documents in " + o.sourceOptions().inputs() + ": directories and zips are read for the extensions "
                        + o.sourceOptions().extensions() + (counts.skipped > 0 ? " (" + counts.skipped + " files skipped as binary)" : "")
                        + "; --all-files reads every non-binary file, .jsonl files give one document per line's \"text\"");
            }
            if (trainedTemp != null) {
                try {
                    move(trainedTemp, tokenizerPath);
                } catch (IOException | RuntimeException e) {
                    if (!o.sharded()) Files.deleteIfExists(o.output());
                    throw e;
                }
                trainedTemp = null;
            }
            return new Stats(ws.documents(), ws.tokens(), counts.bytes, secs, trainSeconds, counts.skipped,
                    o.output(), tokenizerPath, eos);
        } finally {
            if (trainedTemp != null) {
                Files.deleteIfExists(trainedTemp);
            }
        }
    }

    /** The one file a sharded dataset is first written to: hidden, beside the directory. */
    private static Path singleFileFor(Path dir) throws IOException {
        Path parent = dir.toAbsolutePath().getParent();
        Files.createDirectories(parent);
        return parent.resolve("." + dir.getFileName() + ".unsharded.arrow");
    }

    private static int resolveEos(Tokenizer tok, Options o) {
        Boolean want = o.appendEos();
        if (want != null && !want) {
            return -1;
        }
        if (tok.eosId().isPresent()) {
            return tok.eosId().getAsInt();
        }
        if (want != null) {
            throw new IllegalArgumentException("appendEos requested but the tokenizer has no EOS token");
        }
        return -1;
    }

    private static void move(Path from, Path to) throws IOException {
        try {
            Files.move(from, to, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (AtomicMoveNotSupportedException e) {
            Files.move(from, to, StandardCopyOption.REPLACE_EXISTING);
        }
    }

    /** Trains the tokenizer on the first {@code sampleBytes} (and at most {@code limitBytes}) of the input. */
    static BpeTokenizer train(TextSource source, Options o) throws IOException {
        long cap = o.limitBytes() > 0 ? Math.min(o.limitBytes(), o.sampleBytes()) : o.sampleBytes();
        TextSource sample = source.withLimitBytes(cap);
        BpeTrainer trainer = new BpeTrainer(o.trainVocabSize(), List.of(EOT));
        ProgressBar bar = o.progress() == null ? null : ProgressBar.builder("tokenizer sample")
                .unit(ProgressBar.Unit.BYTES).total(sample.estimateBytes()).out(o.progress()).build();
        try (TextSource.Cursor c = sample.open()) {
            for (TextSource.Document d; (d = c.next()) != null; ) {
                trainer.addText(d.text());
                if (bar != null) {
                    bar.add(d.bytes());
                }
            }
        } finally {
            if (bar != null) {
                bar.close();
            }
        }
        int wanted = o.trainVocabSize() - 256 - 1;
        ProgressBar merges = o.progress() == null ? null : ProgressBar.builder("BPE merges")
                .unit(ProgressBar.Unit.ITEMS).total(wanted).out(o.progress()).build();
        try {
            if (merges != null) {
                trainer.progress((done, w) -> merges.set(done));
            }
            BpeTokenizer t = trainer.train();
            // make EOS explicit (the conventional-name lookup would also find it)
            int eot = t.idOf(EOT);
            return eot >= 0 ? t.toBuilder().eos(eot).build() : t;
        } finally {
            if (merges != null) {
                merges.close();
            }
        }
    }

    private static final class Counts {
        long bytes;
        long skipped;
    }

    private static int[] encode(Tokenizer tok, String text, int eos, Options o) {
        int[] ids = tok.encode(text, o.addBos(), o.parseSpecialTokens());
        if (eos < 0) {
            return ids;
        }
        int[] out = Arrays.copyOf(ids, ids.length + 1);
        out[ids.length] = eos;
        return out;
    }

    private static void tokenize(TextSource source, Tokenizer tok, int eos, Options o, TokenDatasetWriter w,
            Counts counts) throws IOException {
        AtomicLong tokens = new AtomicLong();
        AtomicLong docs = new AtomicLong();
        ProgressBar bar = o.progress() == null ? null : ProgressBar.builder("tokenize")
                .unit(ProgressBar.Unit.BYTES).total(source.estimateBytes()).out(o.progress())
                .detail(() -> String.format(Locale.ROOT, "%,d docs, %,d tokens", docs.get(), tokens.get()))
                .build();
        ExecutorService pool = o.threads() > 1 ? Executors.newFixedThreadPool(o.threads(), daemonThreads()) : null;
        ArrayDeque<Pending> inFlight = new ArrayDeque<>();
        int maxInFlight = 4 * o.threads();
        try (TextSource.Cursor c = source.open()) {
            for (TextSource.Document d; (d = c.next()) != null; ) {
                if (pool == null) {
                    emit(w, encode(tok, d.text(), eos, o), d.bytes(), bar, tokens, docs);
                } else {
                    String text = d.text();
                    inFlight.add(new Pending(pool.submit(() -> encode(tok, text, eos, o)), d.bytes()));
                    while (inFlight.size() >= maxInFlight) {
                        Pending p = inFlight.poll();
                        emit(w, await(p.future), p.bytes, bar, tokens, docs);
                    }
                }
            }
            while (!inFlight.isEmpty()) {
                Pending p = inFlight.poll();
                emit(w, await(p.future), p.bytes, bar, tokens, docs);
            }
            counts.bytes = c.bytesRead();
            counts.skipped = c.skippedBinary();
        } finally {
            if (pool != null) {
                for (Pending p : inFlight) {
                    p.future.cancel(true);
                }
                pool.shutdownNow();
            }
            if (bar != null) {
                bar.close();
            }
        }
    }

    private record Pending(Future<int[]> future, long bytes) {}

    private static void emit(TokenDatasetWriter w, int[] ids, long bytes, ProgressBar bar, AtomicLong tokens,
            AtomicLong docs) throws IOException {
        w.add(ids);
        tokens.addAndGet(ids.length);
        docs.incrementAndGet();
        if (bar != null) {
            bar.add(bytes);
        }
    }

    private static int[] await(Future<int[]> f) throws IOException {
        try {
            return f.get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new java.io.InterruptedIOException("interrupted while tokenizing");
        } catch (ExecutionException e) {
            Throwable c = e.getCause();
            if (c instanceof UncheckedIOException u) {
                throw u.getCause();
            }
            if (c instanceof RuntimeException r) {
                throw r;
            }
            if (c instanceof Error err) {
                throw err;
            }
            throw new IOException("tokenizing failed: " + c, c);
        }
    }

    private static java.util.concurrent.ThreadFactory daemonThreads() {
        AtomicInteger n = new AtomicInteger();
        return r -> {
            Thread t = new Thread(r, "exeunt-prepare-" + n.incrementAndGet());
            t.setDaemon(true);
            return t;
        };
    }
}
