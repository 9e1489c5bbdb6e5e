package dev.exeunt.cli;

import dev.exeunt.model.data.Prepare;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Set;

final class PrepareCommand implements Main.Command {
    public String summary() {
        return "tokenize text files, directories, .zip or .jsonl into an Arrow dataset (input_ids list<int32>)";
    }

    public String usage() {
        return """
                usage: exeunt prepare --input PATH [--input PATH ...] (--tokenizer tokenizer.json | --train-tokenizer VOCAB)
                                      --out FILE.arrow|DIR [--num-shards N | --max-shard-size 500MB]
                                      [--limit-mb N] [--all-files] [--threads N] [--json]
                  A trained tokenizer is saved as tokenizer.json beside the output. With --num-shards or
                  --max-shard-size, --out is a Hugging Face datasets directory (data-0000N-of-0000M.arrow,
                  state.json, dataset_info.json, as save_to_disk writes) that train/tune/eval/sweep read.""";
    }

    public int run(String[] argv, PrintStream out) throws Exception {
        var a = new Args(argv, Set.of("json", "all-files"));
        boolean json = a.getBool("json", false);
        var b = Prepare.Options.builder();
        List<String> inputs = a.getAll("input");
        if (inputs.isEmpty()) a.require("input", "a text file, directory, .zip or .jsonl");
        for (String given : inputs) for (String in : given.split(",")) b.input(Path.of(in.trim()));
        if (a.has("tokenizer")) b.tokenizer(Path.of(a.get("tokenizer", null)));
        else if (a.has("train-tokenizer")) b.trainTokenizer(a.getInt("train-tokenizer", 0));
        else throw new Args.UsageException("give --tokenizer FILE or --train-tokenizer VOCAB");
        b.output(Path.of(a.require("out", "the .arrow file (or, with --num-shards, dataset directory) to write")));
        if (a.has("num-shards")) b.numShards(a.getInt("num-shards", 0));
        if (a.has("max-shard-size")) {
            try {
                b.maxShardSize(dev.exeunt.model.io.DatasetSharder.parseSize(a.get("max-shard-size", null)));
            } catch (IllegalArgumentException e) {
                throw new Args.UsageException("--max-shard-size: " + e.getMessage());
            }
        }
        if (a.has("limit-mb")) b.limitBytes((long) (a.getDouble("limit-mb", 0) * 1_000_000));
        b.allFiles(a.getBool("all-files", false));
        if (a.has("threads")) b.threads(a.getInt("threads", 1));
        b.progress(System.err);
        a.checkAllUsed();
        var stats = Prepare.run(b.build());
        if (json) {
            out.printf(Locale.ROOT, "{\"documents\":%d,\"tokens\":%d,\"bytes\":%d,\"seconds\":%.3f,\"tokens_per_s\":%.1f,\"output\":\"%s\",\"tokenizer\":\"%s\"}%n",
                    stats.documents(), stats.tokens(), stats.bytes(), stats.seconds(), stats.tokensPerSecond(),
                    Json.escape(stats.output().toString()), Json.escape(String.valueOf(stats.tokenizer())));
        } else {
            out.println(stats);
        }
        return 0;
    }
}
