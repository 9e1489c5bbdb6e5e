package dev.exeunt.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.exeunt.model.checkpoint.ModelCheckpoint;
import dev.exeunt.model.gguf.GgufTokenizers;
import dev.exeunt.model.io.GgufFile;
import dev.exeunt.model.tokenizer.HfTokenizerJson;
import dev.exeunt.model.tokenizer.Tokenizer;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Set;

/** Text to token ids and back with a model's tokenizer: what the model will see, and whether decoding gives the text back. */
final class TokenizeCommand implements Main.Command {
    public String summary() {
        return "token ids and tokens of a text with a model's tokenizer, and whether they decode back to it";
    }

    public String usage() {
        return """
                usage: exeunt tokenize (--model DIR|FILE.gguf | --tokenizer tokenizer.json) (--text TEXT | --file FILE)
                                       [--add-bos] [--no-special] [--json]
                  Prints the ids, the tokens (as the vocabulary stores them) and the round trip (decode(encode(text))).
                  --add-bos prepends the tokenizer's BOS token, as generate does for a text prompt.
                  --no-special encodes special tokens written in the text (<|endoftext|>) as ordinary text.
                  --json prints {ids, tokens, count, text, round_trip}: text is the decoded ids, round_trip whether
                    it equals the input.""";
    }

    public int run(String[] argv, PrintStream out) throws Exception {
        var a = new Args(argv, Set.of("add-bos", "no-special", "json"));
        String model = a.get("model", null), file = a.get("tokenizer", null);
        if ((model == null) == (file == null)) throw new Args.UsageException("give exactly one of --model and --tokenizer");
        String text = a.get("text", null), textFile = a.get("file", null);
        if ((text == null) == (textFile == null)) throw new Args.UsageException("give exactly one of --text and --file");
        boolean addBos = a.getBool("add-bos", false), special = !a.getBool("no-special", false), json = a.getBool("json", false);
        a.checkAllUsed();
        if (textFile != null) text = Files.readString(Path.of(textFile), StandardCharsets.UTF_8);
        Tokenizer tok = model != null ? ofModel(Path.of(model)) : HfTokenizerJson.load(Path.of(file));
        int[] ids = tok.encode(text, addBos, special);
        String decoded = tok.decode(ids);
        // With a BOS prepended, the round trip is the text after it.
        String back = addBos && tok.bosId().isPresent() && ids.length > 0 && ids[0] == tok.bosId().getAsInt()
                ? tok.decode(java.util.Arrays.copyOfRange(ids, 1, ids.length)) : decoded;
        boolean same = back.equals(text);
        if (json) {
            ObjectNode o = new ObjectMapper().createObjectNode();
            var idNode = o.putArray("ids");
            var tokens = o.putArray("tokens");
            for (int id : ids) {
                idNode.add(id);
                tokens.add(tok.tokenText(id));
            }
            o.put("count", ids.length).put("text", decoded).put("round_trip", same);
            out.println(o);
            return 0;
        }
        out.println("ids:    " + java.util.Arrays.toString(ids));
        var sb = new StringBuilder("tokens: [");
        for (int i = 0; i < ids.length; i++) sb.append(i > 0 ? ", " : "").append(Json.quote(tok.tokenText(ids[i])));
        out.println(sb.append(']'));
        out.printf(Locale.ROOT, "%d tokens; round trip %s%n", ids.length, same ? "identical" : "differs: " + Json.quote(back));
        return 0;
    }

    /** The tokenizer of a checkpoint directory (its tokenizer.json) or a GGUF file (its tokenizer metadata). */
    private static Tokenizer ofModel(Path model) throws IOException {
        if (Files.isRegularFile(model) && model.getFileName().toString().toLowerCase(Locale.ROOT).endsWith(".gguf")) {
            try (GgufFile gguf = GgufFile.open(model)) {
                return GgufTokenizers.load(gguf);
            }
        }
        Path json = model.resolve(ModelCheckpoint.TOKENIZER);
        if (!Files.exists(json)) throw new IOException(model + " has no " + ModelCheckpoint.TOKENIZER + " (give --tokenizer FILE)");
        return HfTokenizerJson.load(json);
    }
}
