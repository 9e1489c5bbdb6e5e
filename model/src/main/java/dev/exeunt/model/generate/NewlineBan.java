package dev.exeunt.model.generate;

import dev.exeunt.model.tokenizer.Tokenizer;
import java.util.Arrays;

/**
 * Megatron's {@code prevent_newline_after_colon}: after a token whose text ends with ':' the next
 * token may not start with a newline (so "Answer:" is followed by the answer, not a blank line).
 * Megatron bans the single "\n" token; a byte-level vocabulary also has "\n\n" and the like, so
 * every token whose bytes start with '\n' is banned.
 */
public final class NewlineBan {
    private final boolean[] endsWithColon;
    private final int[] newlineIds;

    private NewlineBan(boolean[] endsWithColon, int[] newlineIds) {
        this.endsWithColon = endsWithColon;
        this.newlineIds = newlineIds;
    }

    /** Scans the tokenizer's vocabulary once (ids it does not use are skipped). */
    public static NewlineBan of(Tokenizer tokenizer) {
        int n = tokenizer.vocabSize();
        boolean[] colon = new boolean[n];
        int[] newline = new int[n];
        int count = 0;
        for (int id = 0; id < n; id++) {
            if (tokenizer.tokenText(id) == null || tokenizer.isSpecial(id)) continue;
            byte[] b = tokenizer.tokenBytes(id);
            if (b.length == 0) continue;
            colon[id] = b[b.length - 1] == ':';
            if (b[0] == '\n') newline[count++] = id;
        }
        return new NewlineBan(colon, Arrays.copyOf(newline, count));
    }

    /** The ids banned after {@code previous}: the newline tokens after a colon, else none. */
    int[] bannedAfter(int previous) {
        return previous >= 0 && previous < endsWithColon.length && endsWithColon[previous] ? newlineIds : null;
    }

    public int[] newlineIds() {
        return newlineIds.clone();
    }
}
