// GenVectors prints $shiro1$ test vectors made by Apache Shiro 1.3.2 itself,
// one "hash<TAB>password" line each, for hawser's auth/password_test.go.
// See README.md in this directory for how it is compiled and run.
import java.io.FileOutputStream;
import java.io.FileDescriptor;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;

import org.apache.shiro.authc.credential.DefaultPasswordService;
import org.apache.shiro.crypto.hash.DefaultHashService;
import org.apache.shiro.crypto.hash.SimpleHash;
import org.apache.shiro.crypto.hash.format.Shiro1CryptFormat;
import org.apache.shiro.util.ByteSource;

public class GenVectors {
    static final String[] ALGS = {"SHA-256", "SHA-512", "SHA-1", "MD5", "SHA-384"};
    static final int[] ITERATIONS = {1, 2, 1000, 500000};
    static final String[] PASSWORDS = {
        "password",
        "correct horse battery staple",
        "p\u00e4ssw\u00f6rd-\u65e5\u672c\u8a9e-\uD83D\uDD11", // pässwörd-日本語-🔑
        "$shiro1$ with spaces, commas & dollars",
    };

    public static void main(String[] args) {
        // UTF-8 whatever the locale: the vectors hold non-ASCII passwords.
        PrintStream out = new PrintStream(new FileOutputStream(FileDescriptor.out), true, StandardCharsets.UTF_8);
        SecureRandom rnd = new SecureRandom();
        Shiro1CryptFormat format = new Shiro1CryptFormat();
        for (String alg : ALGS) {
            for (int it : ITERATIONS) {
                // The path a Shiro application takes: DefaultPasswordService
                // (Shiro1CryptFormat, random 16-byte public salt, no private
                // salt) over a DefaultHashService set to alg and it.
                DefaultHashService hs = new DefaultHashService();
                hs.setHashAlgorithmName(alg);
                hs.setHashIterations(it);
                hs.setGeneratePublicSalt(true);
                DefaultPasswordService ps = new DefaultPasswordService();
                ps.setHashService(hs);
                for (int i = 0; i < PASSWORDS.length; i++) {
                    // At Shiro's default cost, two passwords (one ASCII, one
                    // not) are enough and keep the Go tests fast.
                    if (it > 1000 && i % 2 == 1) {
                        continue;
                    }
                    String pw = PASSWORDS[i];
                    String h = ps.encryptPassword(pw);
                    check(ps.passwordsMatch(pw, h) && !ps.passwordsMatch(pw + "x", h), h);
                    out.println(h + "\t" + pw);
                }
                if (it > 1000) {
                    continue;
                }
                // DefaultPasswordService refuses to hash an empty password
                // (encryptPassword returns null), so the empty password is
                // hashed with SimpleHash, the class DefaultHashService
                // delegates to, and formatted by Shiro1CryptFormat.
                check(ps.encryptPassword("") == null, "empty password hashed");
                byte[] salt = new byte[16];
                rnd.nextBytes(salt);
                SimpleHash sh = new SimpleHash(alg, ByteSource.Util.bytes(new byte[0]), ByteSource.Util.bytes(salt), it);
                String h = format.format(sh);
                check(format.parse(h).equals(sh), h);
                out.println(h + "\t");
            }
        }
    }

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }
}
