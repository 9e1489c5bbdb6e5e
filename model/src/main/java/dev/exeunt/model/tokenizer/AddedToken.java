package dev.exeunt.model.tokenizer;

/**
 * A token matched literally in text before BPE (Hugging Face "added_tokens" entry).
 *
 * @param special true for control tokens (BOS/EOS/...), which {@code decode(ids, true)} skips
 */
public record AddedToken(int id, String content, boolean special) {
    public AddedToken {
        if (content == null || content.isEmpty()) throw new IllegalArgumentException("added token " + id + " has empty content");
        if (id < 0) throw new IllegalArgumentException("added token '" + content + "' has negative id " + id);
    }
}
