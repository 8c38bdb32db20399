// @ts-check
import tseslint from "typescript-eslint";

export default tseslint.config(
  // This file configures, it is not linted; portal/static holds the few lines of
  // browser script the pages enhance themselves with, outside the Node project.
  {
    ignores: [
      "node_modules/**",
      "data/**",
      "stubs/**",
      "coverage/**",
      "test-artifacts/**",
      "portal/static/**",
      "eslint.config.js",
    ],
  },
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "no-console": "error",
      // Query results from knex are untyped; an assertion at the repository
      // boundary documents the row shape, and Number() guards drivers that
      // return int8 as strings. These two rules would forbid both.
      "@typescript-eslint/no-unnecessary-type-assertion": "off",
      "@typescript-eslint/no-unnecessary-type-conversion": "off",
      "@typescript-eslint/restrict-template-expressions": ["error", { allowNumber: true }],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
      // Only these modules may talk to the outside SDKs (see README "Architecture").
      "no-restricted-imports": [
        "error",
        {
          paths: [
            { name: "stripe", message: "Only src/billing may import stripe." },
            { name: "dockerode", message: "Only src/provisioning may import dockerode." },
            { name: "matrix-bot-sdk", message: "Only src/matrix may import matrix-bot-sdk." },
          ],
        },
      ],
    },
  },
  {
    files: ["src/matrix/**", "src/billing/**", "src/provisioning/**", "test/**", "bench/**"],
    rules: { "no-restricted-imports": "off" },
  },
  {
    files: ["test/**", "bench/**"],
    rules: {
      "no-console": "off",
      "@typescript-eslint/no-non-null-assertion": "off",
      "@typescript-eslint/no-unsafe-assignment": "off",
      "@typescript-eslint/no-unsafe-member-access": "off",
      // Hooks guard against a failed setup (`stack?.stop()`), which the types cannot see.
      "@typescript-eslint/no-unnecessary-condition": "off",
      "@typescript-eslint/no-confusing-void-expression": "off",
    },
  },
);
