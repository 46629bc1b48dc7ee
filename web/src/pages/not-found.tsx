/** What an address that leads nowhere (or to something the person may not see) shows. */
import { Link } from 'react-router';

export function NotFound({ what }: { what?: string }) {
  return (
    <section className="page">
      <h1>Not found</h1>
      <p>{what ? `${what} is not here yet.` : 'There is nothing at this address, or you may not see it.'}</p>
      <p><Link to="/">Back to the fleet</Link></p>
    </section>
  );
}
