/** Input rules shared by several routes; the description is quoted in 400 messages. */
export const USER_ID = '^[A-Za-z0-9._:@-]{1,64}$';
export const USER_ID_RULE = 'must be 1-64 characters of A-Z a-z 0-9 . _ : @ -';
