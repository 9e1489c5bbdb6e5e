package dev.exeunt.model.io;

import dev.exeunt.model.tokenizer.TokenizerHash;
import dev.exeunt.model.tokenizer.TokenizerMismatchException;

/** The one refusal of a dataset tokenized with another tokenizer, shared by the file reader and the mapped dataset. */
final class DatasetTokenizerCheck {
    private DatasetTokenizerCheck() {}

    /**
     * Refuses (a {@link TokenizerMismatchException} naming both) when the dataset's recorded {@code mine}
     * differs from {@code hash}; either null means unknown and passes.
     *
     * @param dataset how to name the dataset in messages
     * @param from    the tokenizer path the dataset records, or null
     * @param whose   who uses {@code hash}, e.g. "the model ckpt uses"
     * @return true when they differ but {@code force} lets them through (a warning is printed)
     */
    static boolean check(String dataset, String mine, String from, String hash, String whose, boolean force)
            throws TokenizerMismatchException {
        boolean forced = TokenizerMismatchException.check("dataset " + dataset + " was tokenized with tokenizer %s"
                + (from == null ? "" : " (" + from + ")") + " but " + whose + " %s", mine, hash, force);
        if (forced) {
            System.err.println("warning: --force: dataset " + dataset + " was tokenized with " + TokenizerHash.shortForm(mine)
                    + ", not " + TokenizerHash.shortForm(hash));
        }
        return forced;
    }
}
