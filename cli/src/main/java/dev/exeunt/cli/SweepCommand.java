package dev.exeunt.cli;

import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.generate.GenerationConfig;
import dev.exeunt.model.generate.Sweep;
import dev.exeunt.model.io.TokenDataset;
import dev.exeunt.model.ModelLoader;
import dev.exeunt.tensor.Device;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;

final class SweepCommand implements Main.Command {
    public String summary() {
        return "early-exit thresholds against speed and agreement with the full model; writes a table and an SVG plot";
    }

    public String usage() {
        return """
                usage: exeunt sweep --model DIR (--prompts FILE (one per line) | --prompt TEXT | --data FILE.arrow)
                                    [--thresholds 1,0.9,0.8,0.6,0.4,0.2] [--max-new-tokens N (64)] [--num-prompts N (4)]
                                    [--prompt-tokens N (32, with --data)] [--repeats N (3)] [--batched] [--out DIR] [--force] [--json]
                                    [--speculative [--draft-max N (%d)]] [--kv-fill recompute|propagate] [--adaptive]
                                    [--tp T] [--pp P [--pipeline-layers L,L,..]] [--engine local|mpi]
                  With --data, prompts are the first --prompt-tokens tokens of evenly spaced held-out documents.
                  Prompts run one at a time (batch size 1) unless --batched packs them into one batch.
                  --out writes sweep.txt, sweep.json and sweep.svg (speedup against agreement).
                  --speculative decodes every row with lossless self-speculative decoding: the exits draft, the full
                    model verifies, so agreement reads 100%%; the "accepted" column is the share of drafts it kept.
                  --kv-fill propagate and --adaptive as in generate (the full model's rows are unaffected by either).
                  --tp / --pp: the model cut over ranks (threads, or mpirun processes), as in generate; world rank 0 prints.
                  --force: use a dataset or tokenizer.json made with another tokenizer than the model's.""".formatted(GenerationConfig.DEFAULT_DRAFT_MAX);
    }

    public int run(String[] argv, PrintStream out) throws Exception {
        var a = new Args(argv, RankLayout.withFlags(Set.of("json", "batched", "force", "speculative", "adaptive")));
        boolean json = a.getBool("json", false);
        Path dir = Path.of(a.require("model", "a checkpoint directory"));
        String thr = a.get("thresholds", "1,0.9,0.8,0.6,0.4,0.2");
        double[] thresholds;
        try {
            thresholds = Arrays.stream(thr.split(",")).map(String::trim).mapToDouble(Double::parseDouble).toArray();
        } catch (NumberFormatException e) {
            throw new Args.UsageException("--thresholds expects numbers like 1,0.8,0.5; got " + thr);
        }
        int maxNew = a.getInt("max-new-tokens", 64), n = a.getInt("num-prompts", 4), promptTokens = a.getInt("prompt-tokens", 32);
        int repeats = a.getInt("repeats", 3);
        if (repeats < 1) throw new Args.UsageException("--repeats must be >= 1, got " + repeats);
        boolean batched = a.getBool("batched", false), force = a.getBool("force", false);
        var rows = GenerateCommand.speculation(a, GenerationConfig.greedy(maxNew));
        String promptsFile = a.get("prompts", null), prompt = a.get("prompt", null), data = a.get("data", null);
        Path outDir = a.has("out") ? Path.of(a.get("out", null)) : null;
        RankLayout layout = RankLayout.parse(a);
        a.checkAllUsed();
        var request = new Request(dir, thresholds, maxNew, n, promptTokens, repeats, batched, force, rows, promptsFile, prompt, data, outDir, json);
        if (layout.isOneRank()) {
            try (var loaded = ModelLoader.load(dir, Device.CPU, force)) {
                sweepOn(loaded, request, true, out);
            }
            return 0;
        }
        ModelParts.run("sweep", layout, dir, force, (state, part) -> {
            try (part) {
                sweepOn(part, request, state.worldRank() == 0, out);
            }
        });
        return 0;
    }

    /** The options, as given. */
    private record Request(Path dir, double[] thresholds, int maxNew, int n, int promptTokens, int repeats, boolean batched, boolean force,
                           GenerationConfig rows, String promptsFile, String prompt, String data, Path outDir, boolean json) {}

    /** The sweep on one rank's model (the whole model, or its shard or stage); the rank that {@code prints} writes the results. */
    private static void sweepOn(ModelCheckpoint.Loaded loaded, Request r, boolean prints, PrintStream out) throws IOException {
        Path dir = r.dir();
        int n = r.n(), promptTokens = r.promptTokens(), maxNew = r.maxNew();
        boolean force = r.force();
        String promptsFile = r.promptsFile(), prompt = r.prompt(), data = r.data();
        var tok = loaded.tokenizer();
        List<int[]> prompts = new ArrayList<>();
        if (data != null) {
            try (var tokens = TokenDataset.open(Path.of(data))) {
                tokens.checkTokenizer(loaded.tokenizerHash(), "the model " + dir + " uses", force);
                long total = tokens.tokenCount();
                if (total < (long) promptTokens * n) throw new IllegalArgumentException("dataset too small for " + n + " prompts");
                for (int i = 0; i < n; i++) {
                    long at = (total - promptTokens) * i / n;
                    int[] p = new int[promptTokens];
                    tokens.read(at, p, 0, promptTokens);
                    prompts.add(p);
                }
            }
        } else {
            List<String> texts = promptsFile != null ? Files.readAllLines(Path.of(promptsFile)).stream().filter(s -> !s.isBlank()).toList()
                    : prompt != null ? List.of(prompt) : List.of();
            if (texts.isEmpty()) throw new Args.UsageException("give --prompts FILE, --prompt TEXT or --data FILE.arrow");
            if (tok == null) throw new IllegalArgumentException(dir + " has no tokenizer.json to encode the prompts");
            for (String t : texts) prompts.add(tok.encode(t.replace("\\n", "\n")));
        }
        var model = loaded.model();
        int eos = tok != null && tok.eosId().isPresent() ? tok.eosId().getAsInt() : -1;
        int longest = prompts.stream().mapToInt(p -> p.length).max().orElse(0);
        GenerationConfig.checkFits("--max-new-tokens", maxNew, longest, model.config().maxSeqLen());
        var points = Sweep.run(model, prompts, r.thresholds(), r.rows().withEos(eos), r.repeats(), r.batched());
        if (!prints) return;
        Path outDir = r.outDir();
        String table = Sweep.table(points), js = Sweep.toJson(points);
        if (outDir != null) {
            Files.createDirectories(outDir);
            Files.writeString(outDir.resolve("sweep.txt"), table);
            Files.writeString(outDir.resolve("sweep.json"), js + "\n");
            Files.writeString(outDir.resolve("sweep.svg"), Sweep.svg(points));
        }
        out.print(r.json() ? js + "\n" : table + (outDir != null ? "wrote " + outDir.resolve("sweep.svg") + "\n" : ""));
    }
}
