package dev.exeunt.model.generate;

/** Called for each generated token as it is produced; returning false finishes that sequence ("stop"). */
@FunctionalInterface
public interface TokenListener {
    boolean onToken(int sequence, GeneratedToken token);

    TokenListener NONE = (s, t) -> true;
}
