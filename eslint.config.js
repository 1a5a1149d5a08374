import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'monitoring/grafana/dashboards/'] },
  js.configs.recommended,
  { languageOptions: { globals: globals.node } },
  { files: ['src/web/page/**'], languageOptions: { globals: globals.browser } },
  ...tseslint.configs.strict,
  {
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
);
